"""The task agent's broker: the parent's side of a policy that asks a language model per ticket.

A sandboxed policy has no network. It asks through ``ratchet_llm.complete`` (optimizer.sandbox
._channel); the fork server relays the request here, and this module validates it, scans it,
enforces the caps, makes the Messages API call with the anthropic SDK (``ANTHROPIC_API_KEY``,
``ANTHROPIC_BASE_URL``) and answers with the text only. Every phase's usage is a ledger entry
``task_agent_usage`` (numbers only) and the experiment's totals are MLflow metrics.

Holdout hygiene. A decide child holds every row set of the experiment in its workdir, holdout
included, so nothing it sends can be attributed to "dev rows only": a request made while deciding
dev may carry holdout text it read from the other file. The broker therefore trusts the phase's
row-set names, which the parent chose, not the child:

- a *clean* session (fit on train, or a decide whose only row set is "dev") holds no holdout row;
  the replies of a dev-only decide go into the experiment's trace, bounded
  (``task_agent.trace_exchanges``/``trace_chars``);
- any other session (holdout present) is *tainted*: its requests and replies are sent and used,
  never logged, cached for tainted sessions only, and never shown to the meta-agent.

The dev reasoning in a trace therefore comes from a separate dev-only decide that runs before the
holdout decide (optimizer.loop.experiment.evaluate). Its replies are cached, so the holdout decide asks
the model only for tickets it has not seen. Clean sessions read only replies cached by clean
sessions: nothing a tainted session caused can reach them, not even as a cache hit's timing.

The routing model does see holdout ticket text (without labels): deciding a ticket is the point,
as a local classifier sees holdout features. What never leaves is an id: every request is scanned
with ``guards.contamination.check_outgoing``; a canary or three holdout ids in one request stop the
phase and write a ``contamination_alarm``. The meta-agent's own requests are scanned separately
(optimizer.proposers._anthropic) and only ever read clean traces.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, Mapping

from guards import GuardName
from holdout import queries
from holdout.entries import ContaminationAlarm, TaskAgentUsage
from holdout.ledger import Kind
from optimizer.base.errors import RatchetError
from optimizer.sandbox._channel import RequestError, parse_request
from optimizer.workspace.config import TaskAgentConfig

CLEAN_ROW_SETS = frozenset({"train", "dev"})  # row sets without any holdout row
MODULE = "ratchet_llm"
_CACHE_ENTRIES = 50_000
_MIN_REQUEST_S = 1.0  # less time left in the phase than this: refuse rather than start a request


def refuse_without_key(what: str) -> None:
    """One line, before any sandbox work: the task agent cannot run without a key."""
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise RatchetError(f"{what} asks Claude to route each ticket (task agent) and needs ANTHROPIC_API_KEY in "
                           "the environment (ANTHROPIC_BASE_URL optional); set it, or use the default policy.")


def make_client(config: TaskAgentConfig):
    import anthropic

    return anthropic.Anthropic(api_key=os.environ["ANTHROPIC_API_KEY"],
                               base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
                               max_retries=config.max_retries, timeout=config.timeout_s)


class TaskAgentBroker:
    """Answers policies' model requests for one workspace session (see the module docstring)."""

    def __init__(self, config: TaskAgentConfig, *, canaries: list[str], holdout_ids: frozenset[str], spent: float,
                 record: Callable[[str, Mapping[str, Any]], None], client: Any = None) -> None:
        self.config, self.canaries, self.holdout_ids = config, list(canaries), holdout_ids
        self.spent, self.record = spent, record
        self.client = client or make_client(config)
        self._cache: dict[str, tuple[str, bool]] = {}  # request digest -> (text, made by a clean session)
        self._reasoning: list[dict] = []
        self._usage: dict[str, float] = {}

    def session(self, phase: str, row_sets: tuple[str, ...], deadline: float) -> "_Session":
        return _Session(self, phase, tuple(row_sets), deadline)

    def take_reasoning(self) -> list[dict]:
        """The replies of the latest dev-only decide (bounded), then forgotten."""
        found, self._reasoning = self._reasoning, []
        return found

    def take_usage(self) -> dict[str, float]:
        """Requests, tokens and cost summed over the phases since the last call."""
        found, self._usage = self._usage, {}
        return found

    # --- used by sessions ---------------------------------------------------------------------
    def _cached(self, key: str, clean: bool) -> str | None:
        hit = self._cache.get(key)
        if hit is None or (clean and not hit[1]):
            return None  # a clean session never sees what a tainted one caused
        return hit[0]

    def _store(self, key: str, text: str, clean: bool) -> None:
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        previous = self._cache.get(key)
        self._cache[key] = (text, clean or bool(previous and previous[1]))

    def _add_usage(self, figures: Mapping[str, float]) -> None:
        for key, value in figures.items():
            self._usage[key] = self._usage.get(key, 0) + value


class _Session:
    """One sandbox phase's requests."""

    def __init__(self, broker: TaskAgentBroker, phase: str, row_sets: tuple[str, ...], deadline: float) -> None:
        self.broker, self.phase, self.row_sets, self.deadline = broker, phase, row_sets, deadline
        self.clean = set(row_sets) <= CLEAN_ROW_SETS
        self.explains = phase == "decide" and row_sets == ("dev",)  # its replies may go into the trace
        self.figures: dict[str, Any] = {"requests": 0, "sent": 0, "cached": 0, "refused": 0, "failed": 0,
                        "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0}
        self.exchanges: list[dict] = []
        self.stopped = ""

    def handle(self, line: str) -> tuple[dict, str | None]:
        config, figures = self.broker.config, self.figures
        figures["requests"] += 1
        try:
            request = parse_request(line, max_chars=config.max_request_chars, max_tokens=config.max_tokens)
        except RequestError as exc:
            figures["refused"] += 1
            return {"error": str(exc)}, None
        from guards.contamination import check_outgoing

        text = json.dumps(request, sort_keys=True)
        scan = check_outgoing("a request to the routing model", text, canaries=self.broker.canaries,
                              holdout_ids=self.broker.holdout_ids)
        if not scan.passed:
            self.broker.record(Kind.CONTAMINATION_ALARM, ContaminationAlarm(
                guard=GuardName.CONTAMINATION, detail=scan.detail, blocked=True, source="task_agent",
                phase=self.phase).to_payload())
            return self._stop(f"{scan.detail}; ticket ids never leave in a model request (contamination)")
        key = hashlib.sha256(text.encode()).hexdigest()
        answer = self.broker._cached(key, self.clean)
        if answer is not None:
            figures["cached"] += 1
        else:
            if figures["sent"] + figures["failed"] >= config.max_requests:  # answers from the cache cost nothing
                return self._stop(f"more than {config.max_requests} model requests in one {self.phase} phase "
                                  "(task_agent.max_requests)")
            if self.broker.spent >= config.spend_cap_usd:
                return self._stop(f"the task agent's spend cap of ${config.spend_cap_usd:.2f} is reached "
                                  f"(${self.broker.spent:.4f} spent in this workspace; task_agent.spend_cap_usd)")
            left = self.deadline - time.monotonic() - 0.5
            if left < _MIN_REQUEST_S:
                figures["failed"] += 1
                return {"error": "no time left in the phase's budget for a model request"}, None
            # every attempt the SDK makes must fit: the phase's budget includes the model's time
            answer = self._send(request, min(config.timeout_s, left / (config.max_retries + 1)))
            if answer is None:
                return {"error": "the model request failed (see task_agent_usage in the ledger)"}, None
            self.broker._store(key, answer, self.clean)
        if self.explains and len(self.exchanges) < config.trace_exchanges:
            asked = request["messages"][-1]["content"]
            self.exchanges.append({"asked": asked[:config.trace_chars], "reply": answer[:config.trace_chars]})
        return {"text": answer}, None

    def _send(self, request: dict, timeout: float) -> str | None:
        from optimizer.llm.model_usage import Usage

        config = self.broker.config
        try:
            if request["system"]:  # the stable prefix (instructions, examples) is cached by the API
                request["system"] = [{"type": "text", "text": request["system"], "cache_control": {"type": "ephemeral"}}]
            else:
                del request["system"]  # the API refuses an empty system prompt
            response = self.broker.client.messages.create(model=config.model, timeout=timeout, **request)
        except Exception:  # noqa: BLE001 - the policy gets a refusal and may fall back; counted, never logged
            self.figures["failed"] += 1  # (an error text may quote the request: holdout text in a tainted session)
            return None
        usage = Usage.of(response.usage)
        cost = usage.cost(config.prices_per_mtok)
        self.broker.spent += cost
        self.figures.update(sent=self.figures["sent"] + 1, input_tokens=self.figures["input_tokens"] + usage.input,
                            output_tokens=self.figures["output_tokens"] + usage.output,
                            cost_usd=self.figures["cost_usd"] + cost)
        return "".join(getattr(block, "text", "") for block in response.content if block.type == "text")

    def _stop(self, reason: str) -> tuple[dict, str]:
        self.stopped = reason
        return {}, reason

    def close(self) -> None:
        if self.explains:
            self.broker._reasoning = self.exchanges
        if not self.figures["requests"]:
            return
        self.broker._add_usage(self.figures)
        self.broker.record(Kind.TASK_AGENT_USAGE, TaskAgentUsage(
            model=self.broker.config.model, phase=self.phase, row_sets=list(self.row_sets), clean=self.clean,
            **self.figures, spent_usd=self.broker.spent, stopped=self.stopped).to_payload())


def open_broker(ctx: Any) -> TaskAgentBroker | None:
    """The workspace's broker when task_agent.enabled, else None; refuses without an API key."""
    config = ctx.config.task_agent
    if not config.enabled:
        return None
    refuse_without_key(f"{ctx.ws.policy} (task_agent.enabled in {ctx.ws.config.name})")
    entries = ctx.ledger.entries()
    spent = queries.spent_usd(entries, Kind.TASK_AGENT_USAGE)
    return TaskAgentBroker(config, canaries=list(ctx.manifest["canaries"]), holdout_ids=ctx.holdout_ids(),
                           spent=spent, record=ctx.ledger.append)


def variant_overrides(domain: Any, variant: str) -> tuple[str, dict[str, Any]]:
    """(policy file name in the domain's package, config overrides) of a shipped policy variant of `domain`
    (a Domain: its `variants`); the caller adds ratchet_llm to static.allowed_imports."""
    if variant not in domain.variants:
        raise RatchetError(f"--variant {variant!r}: unknown for domain {domain.name!r}; available: "
                           f"{', '.join(domain.variants) or 'none'}.")
    refuse_without_key(f"--variant {variant} (domains/{domain.name}/{domain.variants[variant]})")
    # Refits would re-ask the model for every dev ticket per keep; the phases wait on the model.
    return domain.variants[variant], {"task_agent.enabled": True, "decision.refits": 0, "sandbox.budget_s": 900}

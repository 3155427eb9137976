"""The meta-agent proposer: Claude reads the traces and the memory, forms a hypothesis, and edits
policy.py surgically through tools (Messages API with tool use).

What leaves the process is only what the tools return: the policy, program.md, the history of
dev-side verdicts and dev traces. Every request is scanned for holdout canaries and ids before it
is sent (a hit blocks it and raises a contamination alarm), traced in MLflow, and its reported
usage is priced and written to the ledger, where the spend cap is counted across runs.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from guards import GuardName
from holdout.entries import AgentUsage
from holdout.entries import ContaminationAlarm as AlarmRecord  # the entry; ContaminationAlarm below: the error
from holdout.ledger import Kind
from optimizer.base.errors import IntegrityError, RatchetError
from optimizer.llm.model_usage import Usage
from optimizer.proposers._agent_tools import TOOLS, Edit, ToolError, apply_edits, numbered, parse_edit, read_trace
from optimizer.proposers._base import Candidate, ProposalContext, Proposer
from optimizer.proposers._memory import summarize
from optimizer.workspace.config import AgentConfig

SYSTEM = """You are the research engineer of an optimization loop for a business system. You improve \
one file, policy.py, one experiment at a time. Each proposal you make is run in a sandbox, scored on \
dev rows by a scorer you cannot see, and kept only if its gain is statistically significant, no \
guardrail or segment gets worse beyond its limit, its decisions are point-in-time and the same whether \
an event is decided alone (with its `history` of earlier events) or in a batch, and a holdout gate agrees. Gaming any of these wastes the experiment: make real improvements.

Work like a scientist: read the latest trace and the history, form ONE hypothesis about what limits the \
policy, and make the smallest edit that tests it. Do not repeat what the history shows failed. Keep the \
policy's contract and the rules in program.md (imports, no I/O, point-in-time features). When you are \
ready, call propose_edit with a one-line hypothesis and search/replace edits (preferred) or a whole new \
file. If the edit is rejected, read the error and fix it."""


class SpendCapReached(RatchetError):
    """The workspace's spend cap is reached: no further request is sent."""


class ContaminationAlarm(IntegrityError):
    """Holdout knowledge was about to leave the process: the request was blocked."""


def make_client(config: AgentConfig):
    """The SDK client: ANTHROPIC_API_KEY required; ANTHROPIC_BASE_URL respected; retries with backoff."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    if not key:
        raise RatchetError("--proposer anthropic needs ANTHROPIC_API_KEY in the environment (and optionally "
                           "ANTHROPIC_BASE_URL); without a key use --proposer optuna.")
    import anthropic

    return anthropic.Anthropic(api_key=key, base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
                               max_retries=config.max_retries, timeout=config.timeout_s)


class AnthropicProposer(Proposer):
    name = "anthropic"

    def __init__(self, *, config: AgentConfig, experiments: Any, primary: str, check: Callable[[str], str | None],
                 canaries: list[str], holdout_ids: frozenset[str], spent: float,
                 record: Callable[[str, dict[str, Any]], object], client: Any = None) -> None:
        self.config = config
        self.experiments = experiments  # the workspace's experiments/ folder (traces, diffs)
        self.primary = primary
        self.check = check  # static scan + contract: None when the source may run
        self.canaries, self.holdout_ids = canaries, holdout_ids
        self.spent = spent
        self.record = record  # ledger entries: agent_usage, contamination_alarm
        self.client = client or make_client(config)
        self.stop_reason = ""
        self._queue: list[tuple[str, Edit, dict]] = []  # (champion it was drafted on, edit, usage meta)

    # --- ask ----------------------------------------------------------------------------------
    def propose(self, context: ProposalContext) -> Candidate | None:
        while True:
            if not self._queue and not self._draft_round(context):
                return None
            base, edit, meta = self._queue.pop(0)
            source = self._rebase(base, edit, context.champion_source)
            if source is not None:
                return Candidate(source, edit.hypothesis, meta)

    def _draft_round(self, context: ProposalContext) -> bool:
        """K proposals on the same champion, each told the round's earlier hypotheses (for diversity)."""
        hypotheses: list[str] = []
        for _ in range(self.config.batch):
            try:
                drafted = self._draft(context, hypotheses)
            except SpendCapReached as exc:
                self.stop_reason = str(exc)
                break
            if drafted is None:
                break
            self._queue.append((context.champion_source, *drafted))
            hypotheses.append(drafted[0].hypothesis)
        return bool(self._queue)

    @staticmethod
    def _rebase(base: str, edit: Edit, champion: str) -> str | None:
        """A proposal drafted on an older champion: re-apply its edits to the new one, or drop it."""
        if base == champion:
            return edit.source
        if not edit.edits:
            return None
        try:
            return apply_edits(champion, edit.edits)
        except ToolError:
            return None

    def _draft(self, context: ProposalContext, earlier: list[str]) -> tuple[Edit, dict] | None:
        messages: list[dict] = [{"role": "user", "content": self._task(context, earlier)}]
        used, steps = Usage(), 0
        for steps in range(1, self.config.max_steps + 1):
            response, usage = self._request(context, messages)
            used = used + usage
            messages.append({"role": "assistant",
                             "content": [b.model_dump(mode="json", exclude_none=True) for b in response.content]})
            uses = [b for b in response.content if b.type == "tool_use"]
            if not uses:
                messages.append({"role": "user", "content": "Call propose_edit with your change and a one-line "
                                                            "hypothesis."})
                continue
            results, accepted = [], None
            for use in uses:
                try:
                    content, edit = self._tool(use.name, use.input, context)
                    results.append({"type": "tool_result", "tool_use_id": use.id, "content": content})
                    accepted = accepted or edit
                except ToolError as exc:
                    results.append({"type": "tool_result", "tool_use_id": use.id, "content": str(exc),
                                    "is_error": True})
            if accepted is not None:
                meta = {"agent_steps": steps, "agent_input_tokens": used.input, "agent_output_tokens": used.output,
                        "agent_cache_read_tokens": used.cache_read, "agent_cache_write_tokens": used.cache_write,
                        "agent_cost_usd": used.cost(self.config.prices_per_mtok)}
                return accepted, meta
            messages.append({"role": "user", "content": results})
        self.stop_reason = (f"the meta-agent made no valid proposal within {self.config.max_steps} steps "
                            "(agent.max_steps); see the MLflow traces")
        return None

    def _task(self, context: ProposalContext, earlier: list[str]) -> str:
        memory = summarize(context.history, self.experiments, self.primary, self.config.history)
        text = (f"Propose the next experiment on policy.py. The primary metric is {self.primary} on dev.\n\n"
                f"Experiment history (most recent last):\n{memory}\n")
        if earlier:
            text += ("\nThis round already proposes (choose a different idea):\n"
                     + "\n".join(f"- {h}" for h in earlier) + "\n")
        return text

    # --- tools --------------------------------------------------------------------------------
    def _tool(self, name: str, args: Any, context: ProposalContext) -> tuple[str, Edit | None]:
        args = args if isinstance(args, dict) else {}
        if name == "read_policy":
            return numbered(context.champion_source), None
        if name == "read_program":
            return context.program, None
        if name == "read_history":
            limit = args.get("limit") if isinstance(args.get("limit"), int) else self.config.history
            return summarize(context.history, self.experiments, self.primary, max(1, min(limit, 200))), None
        if name == "read_trace":
            return read_trace(self.experiments, str(args.get("experiment", "latest")), self.config.trace_chars), None
        if name == "propose_edit":
            edit = parse_edit(args, context.champion_source, self.check)
            return "accepted: the experiment will run", edit
        raise ToolError(f"unknown tool {name!r}; the tools are {', '.join(t['name'] for t in TOOLS)}")

    # --- one request --------------------------------------------------------------------------
    def _request(self, context: ProposalContext, messages: list[dict]) -> tuple[Any, Usage]:
        from mlflow.entities import SpanType

        import mlflow
        from guards.contamination import check_outgoing

        cap = self.config.spend_cap_usd
        if self.spent >= cap:
            raise SpendCapReached(f"the meta-agent's spend cap of ${cap:.2f} is reached (${self.spent:.4f} spent in "
                                  "this workspace); raise agent.spend_cap_usd to continue")
        # The stable prefix (instructions, program.md, tools) is cached by the API across requests.
        system = [{"type": "text", "text": SYSTEM},
                  {"type": "text", "text": f"program.md:\n{context.program}", "cache_control": {"type": "ephemeral"}}]
        request = {"model": self.config.model, "max_tokens": self.config.max_tokens, "system": system,
                   "tools": TOOLS, "messages": messages}
        scan = check_outgoing("the request to the model", json.dumps(request), canaries=self.canaries,
                              holdout_ids=self.holdout_ids)
        if not scan.passed:
            self.record(Kind.CONTAMINATION_ALARM,
                        AlarmRecord(guard=GuardName.CONTAMINATION, detail=scan.detail, blocked=True).to_payload())
            raise ContaminationAlarm(f"contamination alarm: {scan.detail}; the request was blocked and nothing was "
                                     "sent. Find how holdout rows reached the traces or program.md before running "
                                     "again.")
        with mlflow.start_span(name="anthropic.messages.create", span_type=SpanType.LLM) as span:
            span.set_inputs({"model": self.config.model, "messages": messages})
            try:
                response = self.client.messages.create(**request)
            except Exception as exc:
                raise RatchetError(f"the model request failed after {self.config.max_retries} retries: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
            span.set_outputs(response.model_dump(mode="json"))
            usage = Usage.of(response.usage)
            cost = usage.cost(self.config.prices_per_mtok)
            span.set_attributes({"input_tokens": usage.input, "output_tokens": usage.output,
                                 "cache_read_tokens": usage.cache_read, "cost_usd": cost})
        self.spent += cost
        self.record(Kind.AGENT_USAGE, AgentUsage(
            model=self.config.model, input_tokens=usage.input, output_tokens=usage.output,
            cache_write_tokens=usage.cache_write, cache_read_tokens=usage.cache_read, cost_usd=cost,
            spent_usd=self.spent).to_payload())
        return response, usage

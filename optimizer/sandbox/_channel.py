"""The model broker's channel: the one way a sandboxed policy may ask a language model anything.

A policy has no network (netns, Landlock, audit hook). When the sandbox was given a broker, each
child holds two pipe ends at fixed numbers: it writes one JSON request per line on REQUEST_FD and
reads one JSON reply per line from REPLY_FD. The fork server relays each line to the parent, which
validates it, enforces the caps, makes the real request and answers with the text only (or an
error, or it stops the phase). A policy reaches the channel through the module ``ratchet_llm``,
which the child installs before the policy loads:

    import ratchet_llm
    text = ratchet_llm.complete(system="...", messages=[{"role": "user", "content": "..."}],
                                max_tokens=400)

Nothing here is trusted by the parent: a candidate may write raw bytes to the pipe. The parent
re-validates every request (``parse_request``); the server bounds line sizes.
"""
from __future__ import annotations

import json
import os
import threading
import types
from typing import Any, Protocol

REQUEST_FD = 4  # child -> server: one JSON request per line
REPLY_FD = 5  # server -> child: one JSON reply per line
MAX_REQUEST_BYTES = 256 * 1024  # a longer line stops the phase (the server never parses it)
MAX_REPLY_BYTES = 1 << 20
MAX_MESSAGES = 64
ROLES = ("user", "assistant")
MODULE_NAME = "ratchet_llm"


class BrokerSession(Protocol):
    """The parent's side of one phase: answers each request line, or stops the phase."""

    def handle(self, line: str) -> tuple[dict, str | None]:
        """(reply for the child: {"text": ...} or {"error": ...}, stop reason or None)."""

    def close(self) -> None:
        """The phase ended: record what it used."""


class Broker(Protocol):
    def session(self, phase: str, row_sets: tuple[str, ...], deadline: float) -> BrokerSession:
        """A session for one fit ("train") or decide (the row-set names) ending at `deadline`
        (time.monotonic); requests must be answered before it."""


class RequestError(ValueError):
    """A request the parent refuses to send (malformed or oversized); the child gets the text."""


def parse_request(line: str, *, max_chars: int, max_tokens: int) -> dict:
    """The request the parent will send, re-validated from untrusted text."""
    try:
        data = json.loads(line)
    except ValueError:
        raise RequestError("the request is not one JSON object per line") from None
    if not isinstance(data, dict) or set(data) - {"system", "messages", "max_tokens"}:
        raise RequestError("a request holds only system, messages and max_tokens")
    system, messages, tokens = data.get("system", ""), data.get("messages"), data.get("max_tokens", 512)
    if not isinstance(system, str):
        raise RequestError("system must be a string")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise RequestError(f"messages must be a list of 1 to {MAX_MESSAGES} messages")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and set(m) == {"role", "content"} and m["role"] in ROLES
                and isinstance(m["content"], str) and m["content"]):
            raise RequestError(f"messages[{i}] must be {{'role': 'user'|'assistant', 'content': non-empty str}}")
    if messages[-1]["role"] != "user":
        raise RequestError("the last message must have role 'user'")
    if type(tokens) is not int or not 1 <= tokens <= max_tokens:
        raise RequestError(f"max_tokens must be an int from 1 to {max_tokens} (task_agent.max_tokens)")
    size = len(system) + sum(len(m["content"]) for m in messages)
    if size > max_chars:
        raise RequestError(f"the request holds {size} characters; the limit is {max_chars} "
                           "(task_agent.max_request_chars)")
    return {"system": system, "messages": [dict(m) for m in messages], "max_tokens": tokens}


# --- the child's side ------------------------------------------------------------------------
def module(connected: bool) -> types.ModuleType:
    """The ``ratchet_llm`` module a policy imports; without a broker every call raises."""
    lock = threading.Lock()
    pending = bytearray()

    def complete(system: str, messages: list, max_tokens: int = 512) -> str:
        """Ask the workspace's routing model; returns its text. Raises RuntimeError on refusal."""
        if not connected:
            raise RuntimeError("ratchet_llm: no model broker in this sandbox (task_agent.enabled is false)")
        line = json.dumps({"system": system, "messages": messages, "max_tokens": max_tokens}).encode() + b"\n"
        if len(line) > MAX_REQUEST_BYTES:
            raise ValueError(f"ratchet_llm: request of {len(line)} bytes exceeds {MAX_REQUEST_BYTES}")
        with lock:
            view = memoryview(line)
            while view:
                view = view[os.write(REQUEST_FD, view):]
            while b"\n" not in pending:
                chunk = os.read(REPLY_FD, 1 << 16)
                if not chunk or len(pending) > MAX_REPLY_BYTES:
                    raise RuntimeError("ratchet_llm: the model broker closed the channel")
                pending.extend(chunk)
            cut = pending.index(b"\n")
            reply: Any = json.loads(bytes(pending[:cut]))
            del pending[:cut + 1]
        if not isinstance(reply, dict) or not isinstance(reply.get("text"), str):
            raise RuntimeError(f"ratchet_llm: {reply.get('error') if isinstance(reply, dict) else 'bad reply'}")
        return reply["text"]

    made = types.ModuleType(MODULE_NAME, "The model broker: complete(system, messages, max_tokens) -> str.")
    made.complete = complete  # type: ignore[attr-defined]  # the module is made here, its attribute at run time
    return made

"""A local HTTP server that speaks the Anthropic Messages API, scripted per test.

Each POST /v1/messages pops the next scripted reply (a message, or an error status with the API's
error body and retry headers) and records the request's headers and JSON body, so tests can assert
what the client sent. With a responder set (`answer_with`), an unscripted request is answered by
calling it on the request body (a text reply); otherwise it gets a 500 the client will retry and
then report.
"""
from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error",
               500: "api_error", 529: "overloaded_error"}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def tool_use(name: str, args: Any, ident: str = "toolu_01") -> dict:
    return {"type": "tool_use", "id": ident, "name": name, "input": args}


class FakeAnthropic:
    def __init__(self) -> None:
        self.script: deque[tuple[int, dict, dict]] = deque()
        self.requests: list[dict] = []
        self.responder: Any = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeAnthropic":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- scripting ----------------------------------------------------------------------------
    def reply(self, *content: dict, stop_reason: str | None = None, input_tokens: int = 1200,
              output_tokens: int = 300, cache_read: int = 0, cache_write: int = 0) -> None:
        stop = stop_reason or ("tool_use" if any(c["type"] == "tool_use" for c in content) else "end_turn")
        self.script.append((200, {
            "id": f"msg_{len(self.script) + len(self.requests):04d}", "type": "message", "role": "assistant",
            "model": "claude-fake", "content": list(content), "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read},
        }, {}))

    def answer_with(self, responder: Any, input_tokens: int = 300, output_tokens: int = 20) -> None:
        """Answer every unscripted request with text = responder(request body)."""
        self.responder = (responder, input_tokens, output_tokens)

    def _message(self, content: list, input_tokens: int, output_tokens: int, stop: str = "end_turn") -> dict:
        return {"id": f"msg_{len(self.requests):04d}", "type": "message", "role": "assistant", "model": "claude-fake",
                "content": content, "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}

    def error(self, status: int, message: str = "try again", retry_after_ms: int = 5) -> None:
        body = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
        self.script.append((status, body, {"retry-after-ms": str(retry_after_ms), "retry-after": "0"}))

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
                if self.path.split("?")[0] != "/v1/messages":
                    status, payload, headers = 404, {"type": "error", "error": {"type": "not_found_error",
                                                                               "message": self.path}}, {}
                elif fake.script:
                    status, payload, headers = fake.script.popleft()
                elif fake.responder is not None:
                    respond, tokens_in, tokens_out = fake.responder
                    status, headers = 200, {}
                    payload = fake._message([text(respond(body))], tokens_in, tokens_out)
                else:
                    status, payload, headers = 500, {"type": "error", "error": {
                        "type": "api_error", "message": "the fake server's script is exhausted"}}, {"retry-after-ms": "1"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", f"req_{len(fake.requests):04d}")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

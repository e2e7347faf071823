"""A real HTTP server on 127.0.0.1 that speaks the Messages API from a script of responses.

The live API cannot be reached from these machines; this server lets the real `anthropic` SDK and
our real strategy code run end to end: tool_use turns, usage, and scripted 429/500/401 errors.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_ids = itertools.count(1)


def tool(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{next(_ids):04d}", "name": name, "input": arguments}


def text(words: str) -> dict[str, Any]:
    return {"type": "text", "text": words}


def turn(
    *blocks: dict[str, Any],
    input_tokens: int = 1000,
    output_tokens: int = 100,
    stop_reason: str | None = None,
    cache_read: int = 0,
) -> dict[str, Any]:
    """One assistant message (`stop_reason`: e.g. "max_tokens" for a response cut off)."""
    uses_tools = any(b["type"] == "tool_use" for b in blocks)
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
    if cache_read:
        usage["cache_read_input_tokens"] = cache_read
    return {
        "kind": "message",
        "body": {
            "id": f"msg_{next(_ids):04d}",
            "type": "message",
            "role": "assistant",
            "model": "scripted",
            "content": list(blocks),
            "stop_reason": stop_reason or ("tool_use" if uses_tools else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        },
    }


def error(status: int, kind: str, message: str) -> dict[str, Any]:
    return {
        "kind": "error",
        "status": status,
        "body": {"type": "error", "error": {"type": kind, "message": message}},
    }


class FakeMessagesAPI:
    def __init__(self) -> None:
        self.script: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.split("?")[0].endswith("/v1/messages"):
                    self._send(
                        404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}}
                    )
                    return
                server.requests.append(body)
                server.headers.append(dict(self.headers))
                step = server.script.pop(0) if server.script else error(500, "api_error", "script exhausted")
                if step["kind"] == "error":
                    self._send(step["status"], step["body"], {"retry-after-ms": "5"})
                else:
                    self._send(200, step["body"])

            def _send(
                self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("request-id", f"req_{next(_ids)}")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeMessagesAPI]:
        thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.httpd.shutdown()
            self.httpd.server_close()

    def tool_results(self, request_index: int) -> list[dict[str, Any]]:
        """The tool_result blocks the client sent in one request."""
        last = self.requests[request_index]["messages"][-1]
        content = last["content"] if isinstance(last["content"], list) else []
        return [block for block in content if block.get("type") == "tool_result"]

"""A small OpenAI-compatible chat-completions server on 127.0.0.1, for the official
``openai`` client in tests: ``POST /v1/chat/completions`` answers with usage; a request that
offers tools and has no tool result yet gets a tool call back (one agent step), the next one
the final answer. Model ``overloaded`` answers 503, like a provider at capacity.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.support.net import BackgroundHTTPServer

COMPLETIONS_PATH = "/v1/chat/completions"


def _words(messages: list[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages) or 1


def completion(request: dict[str, Any]) -> dict[str, Any]:
    messages = request.get("messages") or []
    model = request.get("model", "stub-model")
    wants_tool = bool(request.get("tools")) and not any(m.get("role") == "tool" for m in messages)
    if wants_tool:
        tool = request["tools"][0]["function"]["name"]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": tool, "arguments": json.dumps({"query": "status"})},
            }],
        }  # fmt: skip
        finish, completion_tokens = "tool_calls", 7
    else:
        message = {"role": "assistant", "content": "All systems nominal."}
        finish, completion_tokens = "stop", 3
    prompt_tokens = _words(messages) + 10
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1_700_000_000,
        # The dated variant, as real providers answer.
        "model": f"{model}-2025-01-01",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        owner: OpenAIStub = self.server.owner  # type: ignore[attr-defined]
        owner.record(dict(self.headers.items()), body)
        if self.path.rstrip("/") != COMPLETIONS_PATH:
            return self._send(404, {"error": {"message": "not found"}})
        request = json.loads(body)
        if request.get("model") == "overloaded":
            return self._send(503, {"error": {"message": "model overloaded", "type": "server"}})
        self._send(200, completion(request))

    def _send(self, status: int, document: dict[str, Any]) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class OpenAIStub(BackgroundHTTPServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self._lock = threading.Lock()
        self.requests: list[tuple[dict[str, str], bytes]] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def record(self, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            self.requests.append((headers, body))

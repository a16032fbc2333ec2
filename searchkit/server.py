"""searchkit as a service: the library behind a REST API and a web search page.

One process loads the model once and answers many clients. Everything goes through the
:class:`~searchkit.index.Index` facade, which is safe to search from many threads (each
thread gets its own SQLite connection, the vector backend is guarded by the index's
lock) and picks up what another process wrote on every search, so a ``searchkit index``
run beside the server needs no restart. Writes take the same cross-process write lock as
the command line; here they are also serialised among themselves, and one that cannot get
the lock within the index's ``lock_timeout`` is answered 423 with the reason.

What a client can get wrong is answered with a JSON body ``{"detail": message, "error":
kind}`` and a 4xx status, never a 500 with a traceback. The server binds to 127.0.0.1 by
default, refuses writes unless they are allowed, checks an API key in constant time when
one is set, bounds request bodies and ``k``, and sends no CORS headers unless origins are
given. The web page builds its DOM from text (never from HTML in documents), under a
Content-Security-Policy that forbids inline scripts.
"""

from __future__ import annotations

import functools
import hmac
import importlib.resources
import json
import logging
import os
import re
import socket
import sys
import threading
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from searchkit import __version__
from searchkit.document import Document, Problem, as_document
from searchkit.errors import (
    ConfigError,
    FilterError,
    IndexCorruptError,
    IndexLockedError,
    IndexNotFoundError,
    QueryError,
    ReaderError,
    SearchkitError,
    ShardUnavailableError,
    StoreWriteError,
)
from searchkit.filters import Where
from searchkit.index import MAX_QUERY_CHARS, QA_CANDIDATES, Hit, Index
from searchkit.retrieval import Fusion, Mode

__all__ = ["ServerSettings", "create_app", "serve", "BackgroundServer", "snippet", "ERROR_STATUS"]

log = logging.getLogger("searchkit.server")

WEB_DIR = Path(__file__).parent / "web"
# Swagger UI's script and style, shipped in the fastapi-offline package, so /docs works without the internet.
SWAGGER_UI_DIR = Path(str(importlib.resources.files("fastapi_offline") / "static"))
DEFAULT_MAX_K = 100
DEFAULT_MAX_BODY_BYTES = 10 * 2**20
MAX_BATCH_QUERIES = 64
MAX_PAGE = 1000
# Chunks fetched per wanted document when hits are grouped by document.
GROUP_DEPTH = 5
GROUP_MAX_CHUNKS = 10_000
SNIPPET_CHARS = 240

# The status of each library error; the first class in this order that matches wins.
ERROR_STATUS: dict[type[SearchkitError], int] = {
    QueryError: 400,
    FilterError: 400,
    ConfigError: 400,
    IndexLockedError: 423,
    IndexNotFoundError: 404,
    StoreWriteError: 507,
    IndexCorruptError: 503,
    ReaderError: 503,
    ShardUnavailableError: 503,
    SearchkitError: 400,
}

# Pages and assets get a policy that allows only this server's own scripts, styles and requests.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class ServerSettings:
    """What a server allows. Writes are off and CORS closed unless asked for."""

    allow_writes: bool = False
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_k: int = DEFAULT_MAX_K
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


class ClientError(Exception):
    """A request the server refuses for reasons of its own (not found, forbidden, too large...)."""

    def __init__(self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.headers = status, kind, dict(headers or {})


# Requests and responses


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


WhereField = Annotated[
    dict[str, Any] | list[str] | None,
    Field(description="A Mongo-style filter such as {\"year\": {\"$gte\": 2020}}, or conditions such as [\"year>=2020\"]."),
]


class SearchRequest(_Strict):
    query: str | None = Field(None, description="One query; give this or `queries`.")
    queries: list[str] | None = Field(None, max_length=MAX_BATCH_QUERIES, description="Several queries, searched in one batch.")
    k: int = Field(10, ge=1, description="Hits per query (at most the server's max_k).")
    where: WhereField = None
    mode: Mode | None = Field(None, description="dense, lexical or hybrid; left out, the index's own setting.")
    fusion: Fusion | None = Field(None, description="weighted or rrf; left out, the index's own setting.")
    hybrid_weight: float | None = Field(None, ge=0.0, le=1.0, description="Dense share of a weighted fusion; left out, the index's.")
    feedback: float | None = Field(None, ge=0.0, le=10.0, description="Hybrid: how far the query moves towards its top fused chunks for a second search (0: none); left out, the index's.")
    rerank: Literal["qa"] | None = None
    group: bool = Field(False, description="Group hits by document: k documents, each with its matching chunks.")
    snippet_chars: int = Field(SNIPPET_CHARS, ge=40, le=4000)


class HitModel(BaseModel):
    rank: int
    score: float
    doc_id: str
    chunk_id: int
    title: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any]
    snippet: str = Field(description="The part of the chunk around the query's words.")
    highlights: list[tuple[int, int]] = Field(description="[start, end) of each matched word in `snippet`.")


class GroupModel(BaseModel):
    doc_id: str
    title: str
    score: float
    metadata: dict[str, Any]
    hits: list[HitModel]


class SearchResult(BaseModel):
    query: str
    hits: list[HitModel]
    groups: list[GroupModel] | None = None
    took_ms: float


class BatchSearchResult(BaseModel):
    results: list[SearchResult]
    took_ms: float


class AskRequest(_Strict):
    question: str
    k: int = Field(5, ge=1)
    candidates: int = Field(QA_CANDIDATES, ge=1)
    where: WhereField = None
    mode: Mode | None = Field(None, description="dense, lexical or hybrid; left out, the index's own setting.")


class AnswerModel(BaseModel):
    answer: str
    score: float
    doc_id: str
    chunk_id: int
    title: str
    start: int
    end: int
    context: str
    passage_start: int
    no_answer_score: float | None = None
    probability: float | None = None


class AskResult(BaseModel):
    question: str
    answers: list[AnswerModel]
    took_ms: float


class AddRequest(_Strict):
    documents: list[Any] = Field(description="Records like {\"id\": ..., \"text\": ..., \"title\": ..., other fields: metadata}.")
    max_document_chars: int | None = Field(None, ge=1)
    offset: int = Field(0, ge=0, description="Position of the first record in the sender's whole input, for problem reports.")


class DeleteRequest(_Strict):
    ids: list[str] = Field(max_length=100_000)


class ProblemModel(BaseModel):
    where: str
    reason: str
    line: int | None = None


class IngestResult(BaseModel):
    added: int
    updated: int
    unchanged: int
    pruned: int
    chunks_added: int
    chunks_removed: int
    failed: list[ProblemModel]
    warnings: list[str]
    seconds: float
    embed_seconds: float


class DeleteResult(BaseModel):
    deleted: list[str]
    not_found: list[str]
    chunks_removed: int


class DocumentModel(BaseModel):
    doc_id: str
    title: str
    metadata: dict[str, Any]
    chars: int
    chunks: int
    source: str
    text: str | None = None


class DocumentList(BaseModel):
    total: int
    offset: int
    limit: int
    documents: list[DocumentModel]


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    documents: int
    writes: bool
    notices: list[str]


# Snippets


_WORD = re.compile(r"\w+")
# Words too common to be worth marking; a query made only of them marks them all.
_STOPWORDS = frozenset(
    "a about an and are as at be by can did do does for from had has have how i in is it its of on or so that the "
    "their there these this those to was were what when where which who whom why will with you your".split()
)


def _stem(word: str) -> str:
    """A crude stem, enough to mark "tides" for "tide" as the porter stemmer of the full-text index matches it."""
    word = "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@functools.lru_cache(maxsize=256)
def _query_matcher(query: str) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """The query's stems, and a pattern for the words that start with one (a stem is a prefix of its word).

    Only the words the pattern finds are stemmed, so a snippet costs a regex scan, not a stem per word.
    """
    words = [w.lower() for w in _WORD.findall(query)]
    meaningful = [w for w in words if w not in _STOPWORDS] or words
    terms = frozenset(_stem(w) for w in meaningful)
    if not terms:
        return terms, None
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return terms, re.compile(rf"\b(?:{alternatives})\w*", re.IGNORECASE)


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> tuple[str, list[tuple[int, int]]]:
    """The ``width`` characters of ``text`` with the most distinct query words, and where they are in it.

    The window starts a little before its first match and is cut at spaces; "…" marks
    text left out. Offsets are into the returned snippet, so a page can wrap them in
    ``<mark>`` elements without ever parsing the document as HTML.
    """
    terms, pattern = _query_matcher(query)
    found = pattern.finditer(text) if pattern else ()
    matches = [(m.start(), m.end(), stem) for m in found if (stem := _stem(m.group())) in terms]
    if len(text) <= width:
        start, end = 0, len(text)
    else:
        start = 0
        if matches:
            best = max(
                range(len(matches)),
                key=lambda i: (len({s for a, _, s in matches[i:] if a < matches[i][0] + width * 3 // 4}), -i),
            )
            start = max(0, min(matches[best][0] - width // 4, len(text) - width))
        if start:
            space = text.find(" ", start)
            start = space + 1 if 0 <= space < start + 20 else start
        end = min(len(text), start + width)
        if end < len(text):
            space = text.rfind(" ", start, end)
            end = space if space > start + width // 2 else end
    prefix = "…" if start else ""
    suffix = "…" if end < len(text) else ""
    shift = len(prefix) - start
    marks = [(a + shift, b + shift) for a, b, _ in matches if a >= start and b <= end]
    return prefix + text[start:end] + suffix, marks


# The app


def create_app(index: Index, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI application serving ``index``; run it with uvicorn (see :func:`serve`).

    Writes wait up to ``index.lock_timeout`` seconds for another writer (this server or
    another process) before they are refused with 423.
    """
    settings = settings or ServerSettings()
    writing = threading.Lock()
    app = FastAPI(
        title="searchkit",
        version=__version__,
        summary="Semantic, lexical and hybrid search over one searchkit index.",
        docs_url=None,  # served below from local files: the default loads Swagger UI from a CDN, blank offline
        redoc_url=None,
    )
    app.state.index = index
    app.state.settings = settings
    _install_errors(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def check_k(k: int) -> None:
        if k > settings.max_k:
            raise ClientError(422, "validation", f"k must be at most {settings.max_k} on this server, got {k}")

    def may_write(request: Request) -> None:
        if not settings.allow_writes:
            raise ClientError(403, "forbidden", "writes are disabled on this server; start it with --allow-writes")
        if settings.api_key is None:
            return
        given = request.headers.get("x-api-key") or _bearer(request.headers.get("authorization", ""))
        if not given or not hmac.compare_digest(given.encode(), settings.api_key.encode()):
            raise ClientError(
                401, "unauthorized", "this server needs an API key for writes: send it as 'Authorization: Bearer KEY'",
                {"WWW-Authenticate": "Bearer"},
            )

    @contextmanager
    def one_writer() -> Iterator[None]:
        """Writes through this server one at a time; the index's file lock then keeps other processes out."""
        if not writing.acquire(timeout=max(index.lock_timeout, 0)):
            raise IndexLockedError(
                f"another write through this server is still running after {index.lock_timeout:g} s; try again"
            )
        try:
            yield
        finally:
            writing.release()

    def search_results(queries: list[str], request: SearchRequest) -> list[SearchResult]:
        check_k(request.k)
        started = time.perf_counter()
        depth = request.k * GROUP_DEPTH if request.group else request.k
        while True:
            batches = index.search_batch(
                queries, depth, where=_where(request.where), mode=request.mode, fusion=request.fusion,
                hybrid_weight=request.hybrid_weight, feedback=request.feedback, rerank=request.rerank,
            )
            # Grouped, a few long documents can fill the chunks fetched: fetch deeper until k documents or no more.
            short = [len({hit.doc_id for hit in hits}) < request.k and len(hits) == depth for hits in batches]
            if not request.group or not any(short) or depth >= GROUP_MAX_CHUNKS:
                break
            depth = min(depth * 4, GROUP_MAX_CHUNKS)
        took = (time.perf_counter() - started) * 1000
        return [_result(query, hits, request, took) for query, hits in zip(queries, batches)]

    @app.get("/health", tags=["service"])
    def health() -> Health:
        """Whether the server is up, and how many documents it serves."""
        return Health(
            status="ok", version=__version__, documents=len(index), writes=settings.allow_writes, notices=index.notices
        )

    @app.get("/info", tags=["service"])
    def info() -> dict[str, Any]:
        """The index's whole configuration, its counts and its metadata fields (as `searchkit info --json`)."""
        return index.info() | {"server": {"writes": settings.allow_writes, "max_k": settings.max_k,
                                          "api_key": settings.api_key is not None}}

    @app.get("/search", tags=["search"], response_model=SearchResult)
    def search_get(
        q: Annotated[str, Query(description="What to search for.", max_length=MAX_QUERY_CHARS)],
        k: Annotated[int, Query(ge=1)] = 10,
        mode: Annotated[Mode | None, Query(description="Left out, the index's own setting.")] = None,
        fusion: Annotated[Fusion | None, Query(description="Left out, the index's own setting.")] = None,
        hybrid_weight: Annotated[float | None, Query(ge=0.0, le=1.0, description="Left out, the index's own setting.")] = None,
        feedback: Annotated[float | None, Query(ge=0.0, le=10.0, description="Left out, the index's own setting.")] = None,
        where: Annotated[
            list[str] | None,
            Query(description="Conditions such as year>=2020 (repeatable; all must hold), or one JSON filter object."),
        ] = None,
        rerank: Literal["qa"] | None = None,
        group: bool = False,
        snippet_chars: Annotated[int, Query(ge=40, le=4000)] = SNIPPET_CHARS,
    ) -> Response:
        """Search with one query given in the URL; `/?q=...` on the web page uses the same parameters."""
        request = SearchRequest(
            query=q, k=k, mode=mode, fusion=fusion, hybrid_weight=hybrid_weight, feedback=feedback, where=_where_param(where),
            rerank=rerank, group=group, snippet_chars=snippet_chars,
        )
        return _json(search_results([q], request)[0])

    @app.post("/search", tags=["search"], response_model=SearchResult | BatchSearchResult)
    def search_post(request: SearchRequest) -> Response:
        """Search with `query` (one result) or `queries` (a batch: one result per query, in order)."""
        if (request.query is None) == (request.queries is None):
            raise ClientError(422, "validation", "give either 'query' (one search) or 'queries' (a batch), not both or neither")
        if request.query is not None:
            return _json(search_results([request.query], request)[0])
        started = time.perf_counter()
        results = search_results(request.queries or [], request)
        return _json(BatchSearchResult(results=results, took_ms=(time.perf_counter() - started) * 1000))

    @app.post("/ask", tags=["search"])
    def ask(request: AskRequest) -> AskResult:
        """Answer spans read from the best chunks, each with its document, offsets and marked context."""
        check_k(request.k)
        if request.candidates > settings.max_k:
            raise ClientError(422, "validation", f"candidates must be at most {settings.max_k} on this server")
        started = time.perf_counter()
        answers = index.ask(
            request.question, request.k, where=_where(request.where), mode=request.mode, candidates=request.candidates
        )
        return AskResult(
            question=request.question, answers=[AnswerModel(**a.to_dict()) for a in answers],
            took_ms=(time.perf_counter() - started) * 1000,
        )

    @app.get("/documents", tags=["documents"])
    def list_documents(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        where: Annotated[list[str] | None, Query(description="Conditions, as on /search.")] = None,
    ) -> DocumentList:
        """A page of the documents (in id order, without their text), optionally filtered."""
        page = index.documents(offset, limit, where=_where(_where_param(where)))
        return DocumentList(
            total=page.total, offset=offset, limit=limit, documents=[DocumentModel(**asdict(d)) for d in page.documents]
        )

    @app.get("/documents/{doc_id:path}", tags=["documents"])
    def get_document(doc_id: str) -> DocumentModel:
        """One whole document: text, title, metadata, size and chunk count."""
        document = index.get(doc_id)
        if document is None:
            raise ClientError(404, "not_found", f"no document with id {doc_id!r} in this index")
        return DocumentModel(**asdict(document))

    @app.post("/documents", tags=["documents"], dependencies=[Depends(may_write)])
    def add_documents(request: AddRequest) -> IngestResult:
        """Add or update documents, as `searchkit index` does: unchanged ones are skipped, bad ones reported."""
        records = [_record(i, item) for i, item in enumerate(request.documents, start=request.offset)]
        options = {} if request.max_document_chars is None else {"max_document_chars": request.max_document_chars}
        with one_writer():
            report = index.add(records, **options)
        return IngestResult(**{name: value for name, value in asdict(report).items() if name in IngestResult.model_fields})

    @app.post("/documents/delete", tags=["documents"], dependencies=[Depends(may_write)])
    def delete_documents(request: DeleteRequest) -> DeleteResult:
        """Remove documents by id; ids not in the index are listed in `not_found`, not errors."""
        with one_writer():
            return DeleteResult(**index.delete(request.ids).to_dict())

    @app.delete("/documents/{doc_id:path}", tags=["documents"], dependencies=[Depends(may_write)])
    def delete_document(doc_id: str) -> DeleteResult:
        """Remove one document; an id not in the index is a 404."""
        with one_writer():
            report = index.delete([doc_id])
        if report.not_found:
            raise ClientError(404, "not_found", f"no document with id {doc_id!r} in this index")
        return DeleteResult(**report.to_dict())

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="searchkit API",
            swagger_js_url="/static-docs/swagger-ui-bundle.js", swagger_css_url="/static-docs/swagger-ui.css",
            swagger_favicon_url="/static-docs/favicon.png",
        )

    app.mount("/static", _PageFiles(directory=WEB_DIR), name="static")
    app.mount("/static-docs", StaticFiles(directory=SWAGGER_UI_DIR), name="static-docs")
    return app


class _PageFiles(StaticFiles):
    """The page's assets, with the page's security headers."""

    async def get_response(self, path: str, scope: MutableMapping[str, Any]) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


_HIT_FIELDS = [f.name for f in dataclass_fields(Hit)]


def _json(model: BaseModel) -> Response:
    """A model already built and checked, serialised once: the hot path skips FastAPI's second validation pass
    (which, for a plain ``def`` endpoint, also costs a second trip through the thread pool)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _result(query: str, hits: list[Hit], request: SearchRequest, took_ms: float) -> SearchResult:
    def model(hit: Hit, rank: int | None = None) -> HitModel:
        text, marks = snippet(hit.text, query, request.snippet_chars)
        fields = {name: getattr(hit, name) for name in _HIT_FIELDS} | ({"rank": rank} if rank else {})
        return HitModel(**fields, snippet=text, highlights=marks)

    if not request.group:
        return SearchResult(query=query, hits=[model(hit) for hit in hits], took_ms=took_ms)
    by_document: dict[str, list[Hit]] = {}
    for hit in hits:
        if hit.doc_id in by_document or len(by_document) < request.k:
            by_document.setdefault(hit.doc_id, []).append(hit)
    groups = [
        GroupModel(doc_id=doc_id, title=chunks[0].title, score=chunks[0].score, metadata=chunks[0].metadata,
                   hits=[model(hit) for hit in chunks])
        for doc_id, chunks in by_document.items()
    ]
    best = [model(group[0], rank) for rank, group in enumerate(by_document.values(), start=1)]
    return SearchResult(query=query, hits=best, groups=groups, took_ms=took_ms)


def _where_param(values: list[str] | None) -> dict[str, Any] | list[str] | None:
    """A filter from the URL: one JSON object, or conditions such as ``year>=2020``."""
    if not values:
        return None
    if len(values) == 1 and values[0].lstrip().startswith("{"):
        try:
            parsed = json.loads(values[0])
        except ValueError as exc:
            raise FilterError(f"the where parameter is not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise FilterError("a JSON where parameter must be an object such as {\"year\": {\"$gte\": 2020}}")
        return parsed
    if any(value.lstrip().startswith("{") for value in values):
        raise FilterError("give one JSON filter object, or conditions such as year>=2020, not both")
    return values


def _where(where: dict[str, Any] | list[str] | None) -> Where | None:
    return where or None


def _record(position: int, item: Any) -> Document | Problem:
    """A posted record as a Document, or the Problem that says why it cannot be one."""
    where = f"documents[{position}]"
    if not isinstance(item, dict):
        return Problem(where, f"a document is an object with 'id' and 'text', got {type(item).__name__}")
    if not _encodable(item):
        return Problem(where, "holds text that is not valid Unicode (a lone surrogate)")
    try:
        document = as_document(item)
    except (TypeError, ValueError) as exc:
        return Problem(where, f"cannot read it as a document: {exc}")
    return replace(document, origin=f"{where} (id {document.id!r})")


def _encodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_encodable(k) and _encodable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# Errors


def _error(status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "error": kind}, status_code=status, headers=dict(headers or {}))


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(SearchkitError)
    async def library_error(_: Request, exc: SearchkitError) -> JSONResponse:
        status = next(code for kind, code in ERROR_STATUS.items() if isinstance(exc, kind))
        headers = {"Retry-After": "1"} if isinstance(exc, IndexLockedError) else None
        return _error(status, type(exc).__name__, str(exc), headers)

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> JSONResponse:
        return _error(exc.status, exc.kind, str(exc), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "validation", "; ".join(_describe(error) for error in exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        message = str(exc.detail)
        if exc.status_code in (404, 405):
            message = f"{message}: {request.method} {request.url.path}; the API is described at /docs"
        return _error(exc.status_code, kind, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error answering %s %s", request.method, request.url.path)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); the server log has the details")


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as 'where: what', with the body/query prefix dropped."""
    location = [str(part) for part in error.get("loc", ())]
    if location and location[0] in ("body", "query", "path", "header"):
        location = location[1:]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    elif error.get("type") == "extra_forbidden":
        message = "unknown field"
    elif error.get("type") == "missing":
        message = "required"
    return f"{'.'.join(location)}: {message}" if location else message


# Body size


class BodyLimit:
    """Refuses request bodies over ``max_bytes`` with 413, before the app reads any of it.

    The body is read here (at most ``max_bytes``) and handed on, so a body sent without a
    Content-Length, in chunks, is bounded too.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Awaitable[Any]], send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await _error(400, "bad_request", "the Content-Length header is not a number")({"type": "http"}, _no_body, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive), send)

    async def _refuse(self, send: Any) -> None:
        limit = f"{self.max_bytes / 2**20:g} MiB" if self.max_bytes >= 2**20 else f"{self.max_bytes:,} bytes"
        response = _error(413, "too_large", f"the request body is over this server's limit of {limit}; send fewer documents at a time")
        await response({"type": "http"}, _no_body, send)


def _replay(messages: list[Any], receive: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def replayed() -> Any:
        return messages.pop(0) if messages else await receive()

    return replayed


async def _no_body() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


# Running


def serve(
    index: Index,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServerSettings | None = None,
    *,
    model_threads: int | None = 1,
    access_log: bool = True,
    log_level: str = "info",
) -> None:
    """Serve ``index`` until interrupted; the model is loaded before the first request is taken.

    ``model_threads`` is how many threads one encode uses (None: PyTorch's default, one per
    core). A server runs many requests at once, so one each keeps the cores busy without
    oversubscribing them; on a busy 2-core machine it cut a query's encode from about 20 to
    7 ms (benchmarks/serve_load.py).
    """
    import uvicorn

    if model_threads is not None:
        _limit_model_threads(model_threads)
    index.search("warm up", 1)  # loads the model and reads every structure a search touches
    uvicorn.run(create_app(index, settings), host=host, port=port, access_log=access_log, log_level=log_level)


def _limit_model_threads(threads: int) -> None:
    """Threads per encode. OpenMP reads its setting once per thread it starts, so the environment is set
    before torch is first imported (as `searchkit serve` does); later, only this thread's share can change."""
    if "torch" not in sys.modules:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


@dataclass
class BackgroundServer:
    """A server on a thread of this process (tests, notebooks, benchmarks), on a free port of 127.0.0.1 by default.

    ``with BackgroundServer(create_app(index)) as server: httpx.get(server.url + "/health")``
    """

    app: Any
    host: str = "127.0.0.1"
    port: int = 0
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def bind_is_local(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    return host in ("localhost", "::1") or host.startswith("127.")

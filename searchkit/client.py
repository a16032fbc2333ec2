"""A Python client for ``searchkit serve``, with the same methods and types as :class:`~searchkit.Index`.

Code moves between a local index and a server by changing one line::

    index = Index.open("my-index")                    # in this process
    index = Client("http://127.0.0.1:8000")            # on a server
    hits = index.search("what makes the tides", k=5, where={"year": {"$gte": 2000}})

Errors come back as the library's own exceptions (``QueryError``, ``FilterError``,
``IndexLockedError``...), with the server's message; what has no library counterpart (a
missing API key, a body too large, a server that cannot be reached) is a
:class:`ServerError`, which is a :class:`~searchkit.SearchkitError` too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from urllib.parse import quote
from enum import Enum
from typing import Any

import httpx

from searchkit.document import Document, Problem
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
from searchkit.index import QA_CANDIDATES, DeleteReport, DocumentPage, Hit
from searchkit.ingest import IngestReport
from searchkit.reader import Answer
from searchkit.retrieval import Fusion, Mode
from searchkit.store import StoredDocument

__all__ = ["Client", "ServerError", "DEFAULT_URL"]

DEFAULT_URL = "http://127.0.0.1:8000"
# Documents per request when adding: well under the server's default body limit for ordinary documents.
ADD_BATCH = 256

_ERRORS: dict[str, type[SearchkitError]] = {
    cls.__name__: cls
    for cls in (QueryError, FilterError, ConfigError, IndexLockedError, IndexNotFoundError, IndexCorruptError,
                StoreWriteError, ReaderError, ShardUnavailableError, SearchkitError)
} | {"validation": QueryError}


class ServerError(SearchkitError):
    """The server refused a request for a reason of its own, or could not be reached."""

    def __init__(self, message: str, status: int | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class Client:
    """A searchkit server at ``url``. ``api_key`` (default: ``SEARCHKIT_API_KEY``) is sent for writes."""

    def __init__(
        self, url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        key = api_key if api_key is not None else os.environ.get("SEARCHKIT_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    # Searching

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        fusion: Fusion | str | None = None,
        hybrid_weight: float | None = None,
        feedback: float | None = None,
        rerank: str | None = None,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; see :meth:`searchkit.Index.search`."""
        body = _search_body(k, where, mode, fusion, hybrid_weight, feedback, rerank) | {"query": query}
        return [_hit(hit) for hit in self._call("POST", "/search", json=body)["hits"]]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 10,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        fusion: Fusion | str | None = None,
        hybrid_weight: float | None = None,
        feedback: float | None = None,
        rerank: str | None = None,
    ) -> list[list[Hit]]:
        """Many queries in one request, one encode on the server; see :meth:`searchkit.Index.search_batch`."""
        if isinstance(queries, str):
            raise QueryError("search_batch takes a list of queries; use search() for one")
        if not queries:
            return []
        body = _search_body(k, where, mode, fusion, hybrid_weight, feedback, rerank) | {"queries": list(queries)}
        return [[_hit(hit) for hit in result["hits"]] for result in self._call("POST", "/search", json=body)["results"]]

    def ask(
        self,
        question: str,
        k: int = 5,
        *,
        where: Where | None = None,
        mode: Mode | str | None = None,
        candidates: int = QA_CANDIDATES,
    ) -> list[Answer]:
        """The ``k`` best answers to ``question``; see :meth:`searchkit.Index.ask`."""
        body = {"question": question, "k": k, "where": _filter(where), "mode": _value(mode), "candidates": candidates}
        return [Answer(**answer) for answer in self._call("POST", "/ask", json=body)["answers"]]

    # Writing (the server must allow writes)

    def add(
        self,
        documents: Iterable[Document | Mapping[str, Any] | Problem],
        *,
        max_document_chars: int | None = None,
        batch_size: int = ADD_BATCH,
    ) -> IngestReport:
        """Add or update documents, ``batch_size`` per request; one report for all, as :meth:`searchkit.Index.add`."""
        report = IngestReport()
        sent = 0
        for batch in _batches(documents, batch_size, report):
            body = {"documents": batch, "max_document_chars": max_document_chars, "offset": sent}
            _merge(report, self._call("POST", "/documents", json=body))
            sent += len(batch)
        return report

    def delete(self, doc_ids: Sequence[str]) -> DeleteReport:
        """Remove documents by id; ids not in the index are reported, not errors."""
        if isinstance(doc_ids, str):
            raise QueryError("delete takes a list of document ids")
        return DeleteReport(**self._call("POST", "/documents/delete", json={"ids": list(doc_ids)}))

    # Inspecting

    def get(self, doc_id: str) -> StoredDocument | None:
        """The stored document with this id, or None; see :meth:`searchkit.Index.get`."""
        try:
            return StoredDocument(**self._call("GET", f"/documents/{_path(doc_id)}"))
        except ServerError as exc:
            if exc.status == 404:
                return None
            raise

    def documents(self, offset: int = 0, limit: int = 100, *, where: Sequence[str] | None = None) -> DocumentPage:
        """A page of the documents matching ``where`` (conditions such as ``year>=2020``), without their text."""
        params: list[tuple[str, str | int]] = [("offset", offset), ("limit", limit)]
        params += [("where", condition) for condition in _conditions(where)]
        page = self._call("GET", "/documents", params=params)
        return DocumentPage(page["total"], page["offset"], [StoredDocument(**doc) for doc in page["documents"]])

    def info(self) -> dict[str, Any]:
        """The index's configuration and counts, as :meth:`searchkit.Index.info` gives them."""
        return self._call("GET", "/info")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def __len__(self) -> int:
        return int(self.health()["documents"])

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _call(self, method: str, path: str, **request: Any) -> Any:
        try:
            response = self._http.request(method, path, **request)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the searchkit server at {self.url} ({exc}); is `searchkit serve` running?") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        detail = body.get("detail") if isinstance(body, dict) else None
        kind = body.get("error") if isinstance(body, dict) else None
        message = str(detail or f"{response.status_code} {response.reason_phrase} from {self.url}{path}")
        error = _ERRORS.get(kind or "")
        if error is not None:
            raise error(message)
        raise ServerError(message, response.status_code, kind)


def _value(choice: Enum | str | None) -> str | None:
    return choice.value if isinstance(choice, Enum) else choice


def _filter(where: Where | None) -> Any:
    if where is None or isinstance(where, Mapping):
        return None if not where else dict(where)
    if isinstance(where, str):
        raise FilterError(f"a filter is a dict or a list of conditions; wrap one condition in a list: [{where!r}]")
    return list(where)


def _conditions(where: Sequence[str] | None) -> list[str]:
    if where is None:
        return []
    if isinstance(where, str) or not all(isinstance(item, str) for item in where):
        raise FilterError("documents() takes a list of conditions such as ['year>=2020']")
    return list(where)


def _search_body(
    k: int, where: Where | None, mode: Mode | str | None, fusion: Fusion | str | None, hybrid_weight: float | None,
    feedback: float | None, rerank: str | None,
) -> dict[str, Any]:
    """The request body; settings left as None are the server index's own (what ``searchkit tune`` chose)."""
    return {"k": k, "where": _filter(where), "mode": _value(mode), "fusion": _value(fusion),
            "hybrid_weight": hybrid_weight, "feedback": feedback, "rerank": rerank}


_HIT_FIELDS = [f.name for f in fields(Hit)]


def _hit(data: Mapping[str, Any]) -> Hit:
    return Hit(**{name: data[name] for name in _HIT_FIELDS})


def _path(doc_id: str) -> str:
    """A document id as a URL path segment (ids may hold slashes, spaces, anything)."""
    return quote(doc_id, safe="")


def _batches(
    documents: Iterable[Document | Mapping[str, Any] | Problem], size: int, report: IngestReport
) -> Iterator[list[dict[str, Any]]]:
    """Documents as JSON records, ``size`` at a time; Problems go straight into the report."""
    batch: list[dict[str, Any]] = []
    for item in documents:
        if isinstance(item, Problem):
            report.failed.append(item)
            continue
        if isinstance(item, Document):
            batch.append({"id": item.id, "text": item.text, "title": item.title, "metadata": dict(item.metadata)})
        else:
            batch.append(dict(item))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _merge(report: IngestReport, part: Mapping[str, Any]) -> None:
    for name in ("added", "updated", "unchanged", "pruned", "chunks_added", "chunks_removed", "seconds", "embed_seconds"):
        setattr(report, name, getattr(report, name) + part[name])
    report.failed.extend(Problem(**problem) for problem in part["failed"])
    report.warnings.extend(part["warnings"])


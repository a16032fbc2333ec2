"""Documents as they enter searchkit, and the record of ones that could not.

A bad input is never fatal: it becomes a :class:`Problem` that says where (path and
line) and why, and the rest of the input is processed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Document", "Problem", "MetadataValue", "as_document"]

MetadataValue = str | int | float | bool | None


@dataclass(frozen=True)
class Problem:
    """An input that was skipped: where it is and why."""

    where: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        location = f"{self.where}:{self.line}" if self.line is not None else self.where
        return f"{location}: {self.reason}"


@dataclass(frozen=True)
class Document:
    """One document to index: a stable id, its text, an optional title and metadata.

    ``origin`` says where it was read from (path and line) so later failures, such as a
    document too large to index, can be reported at their source. ``source`` is the
    stable key of the file it came from (see :func:`searchkit.sources.source_key`), the
    same however the path was spelled, so an ingest can tell which stored documents a
    file or folder accounts for and prune the ones that are gone; documents built in
    Python have none. It comes last so positional construction keeps working.
    """

    id: str
    text: str
    title: str = ""
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    origin: str = ""
    source: str = ""

    def validate(self, max_chars: int) -> str | None:
        """The reason this document cannot be indexed, or None if it can."""
        if not isinstance(self.id, str) or not self.id.strip():
            return "document id is empty"
        if not isinstance(self.text, str) or not self.text.strip():
            return "document text is empty"
        if len(self.text) > max_chars:
            return (
                f"document is {len(self.text):,} characters, over the limit of {max_chars:,}; "
                "split it or raise max_document_chars"
            )
        for key, value in self.metadata.items():
            if not isinstance(key, str) or not key:
                return f"metadata key {key!r} is not a non-empty string"
            if value is not None and not isinstance(value, (str, int, float, bool)):
                return f"metadata field {key!r} holds a {type(value).__name__}; use str, number or bool"
            if isinstance(value, float) and not math.isfinite(value):
                return f"metadata field {key!r} is {value}, which cannot be stored"
            if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
                return (
                    f"metadata field {key!r} is {value}, beyond the 64-bit integers an index stores; "
                    "write it as a string (or a float, if approximate is fine)"
                )
        return None

    @property
    def content_hash(self) -> str:
        """Hash of what gets embedded (title and text); metadata changes need no re-embedding.

        The first 128 bits of the SHA-256, as 32 hex digits: enough to tell versions of a
        document apart, and what the store keeps (as 16 bytes).
        """
        digest = hashlib.sha256()
        digest.update(self.title.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
        digest.update(self.text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:32]

    def metadata_json(self) -> str:
        if not self.metadata:  # most documents of a large add: skip the encoder
            return "{}"
        return json.dumps(dict(self.metadata), sort_keys=True, ensure_ascii=False)


def as_document(item: Document | Mapping[str, Any]) -> Document:
    """Accept a Document or a plain dict (``id``/``_id``, ``text``, ``title``, the rest metadata)."""
    if isinstance(item, Document):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"expected a Document or a dict, got {type(item).__name__}")
    data = dict(item)
    doc_id = data.pop("id", None)
    if doc_id is None:
        doc_id = data.pop("_id", "")
    metadata = data.pop("metadata", None) or {}
    text = data.pop("text", "")
    title = data.pop("title", "") or ""
    return Document(
        id=str(doc_id), text=text, title=str(title), metadata={**data, **metadata}
    )

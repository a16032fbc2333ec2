"""Metadata filters: a small Mongo-style language compiled to SQLAlchemy expressions.

``{"topic": "nlp", "year": {"$gte": 2020}}`` becomes a parameterised condition on the
documents table; values are always bound parameters, never formatted into SQL. The CLI's
``--where 'year>=2020'`` strings parse into the same structure, so both paths share one
validator and one compiler.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, select

from searchkit.errors import FilterError
from searchkit.store import documents, field_values

__all__ = ["Where", "compile_where", "parse_condition", "parse_conditions", "BUILTIN_FIELDS"]

Where = Mapping[str, Any]

COMPARISONS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"}
LOGICAL = {"$and", "$or"}
# Fields of the document itself, filterable alongside its metadata.
BUILTIN_FIELDS = {"doc_id": documents.c.doc_id, "title": documents.c.title}

_CONDITION = re.compile(r"^\s*([^\s=!<>]+)\s*(==|=|!=|>=|<=|>|<| in | not in )\s*(.*?)\s*$", re.IGNORECASE)
_CLI_OPERATORS = {"=": "$eq", "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte", "in": "$in", "not in": "$nin"}


def compile_where(where: Where | None, known_fields: Collection[str]) -> ColumnElement[bool] | None:
    """Validate a filter and compile it to a SQL condition on ``documents``.

    Unknown fields are errors rather than empty results: a typo in a field name would
    otherwise look exactly like "no matching documents".
    """
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise FilterError(f"a filter must be a dict like {{'topic': 'nlp'}}, got {type(where).__name__}")
    if not where:
        return None
    return _compile_mapping(where, set(known_fields))


def _compile_mapping(where: Mapping[str, Any], known: set[str]) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for key, value in where.items():
        if key in LOGICAL:
            if not isinstance(value, Sequence) or isinstance(value, str) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters, got {value!r}")
            parts = [_compile_mapping(_as_mapping(part, key), known) for part in value]
            clauses.append(and_(*parts) if key == "$and" else or_(*parts))
        elif key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}; use one of {', '.join(sorted(LOGICAL))} at the top level")
        else:
            clauses.append(_compile_field(key, value, known))
    return and_(*clauses) if len(clauses) > 1 else clauses[0]


def _as_mapping(part: Any, operator: str) -> Mapping[str, Any]:
    if not isinstance(part, Mapping) or not part:
        raise FilterError(f"each item of {operator} must be a non-empty filter dict, got {part!r}")
    return part


def _compile_field(name: str, condition: Any, known: set[str]) -> ColumnElement[bool]:
    if name not in BUILTIN_FIELDS and name not in known:
        fields = ", ".join(sorted(known | set(BUILTIN_FIELDS))) or "none"
        raise FilterError(f"unknown filter field {name!r}; the index has these fields: {fields}")
    if not isinstance(condition, Mapping):
        condition = {"$eq": condition}
    if not condition:
        raise FilterError(f"empty condition for field {name!r}")
    if name in BUILTIN_FIELDS:
        clauses = [_compare(name, BUILTIN_FIELDS[name], op, value) for op, value in condition.items()]
    else:
        clauses = [_metadata_compare(name, op, value) for op, value in condition.items()]
    return and_(*clauses) if len(clauses) > 1 else clauses[0]


def _metadata_compare(name: str, op: str, value: Any) -> ColumnElement[bool]:
    """A comparison on a metadata field, through the (field, value) index of ``field_values``.

    Negative conditions (``$ne``, ``$nin``, ``$eq: null``) are "no row of this field matches
    the positive one", so a document without the field satisfies them, as a missing JSON
    key would.
    """
    positive = {"$ne": "$eq", "$nin": "$in"}.get(op, op)
    if value is None and op in ("$eq", "$ne"):
        positive, negate = "$ne", op == "$eq"  # null: "has a non-null value", negated for $eq
    else:
        negate = op in ("$ne", "$nin")
    matching = select(field_values.c.document_pk).where(
        field_values.c.name == name, _compare(name, field_values.c.value, positive, value, op)
    )
    return documents.c.pk.not_in(matching) if negate else documents.c.pk.in_(matching)


def _compare(name: str, column: Any, op: str, value: Any, shown: str | None = None) -> ColumnElement[bool]:
    """``column`` compared by ``op``; messages name the operator the user wrote (``shown``)."""
    shown = shown or op
    if op not in COMPARISONS:
        raise FilterError(f"unknown operator {shown!r} for field {name!r}; use one of {', '.join(sorted(COMPARISONS))}")
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple, set, frozenset)) or not value:
            raise FilterError(f"{shown} on field {name!r} takes a non-empty list, got {value!r}")
        for item in value:
            _check_scalar(name, shown, item)
        matches = column.in_(list(value))
        return matches if op == "$in" else or_(column.is_(None), not_(matches))
    _check_scalar(name, shown, value)
    if value is None and op in ("$eq", "$ne"):
        return column.is_(None) if op == "$eq" else column.is_not(None)
    if op == "$eq":
        return column == value
    if op == "$ne":
        return or_(column.is_(None), column != value)
    if value is None:
        raise FilterError(f"{shown} on field {name!r} needs a value, not null")
    return {"$gt": column > value, "$gte": column >= value, "$lt": column < value, "$lte": column <= value}[op]


def _check_scalar(name: str, op: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise FilterError(f"{op} on field {name!r} compares with a {type(value).__name__}; use a string, number or bool")


def parse_condition(text: str) -> dict[str, Any]:
    """Parse one CLI condition such as ``year>=2020``, ``topic=nlp`` or ``lang in en,de``."""
    match = _CONDITION.match(text)
    if not match:
        raise FilterError(
            f"cannot parse filter {text!r}; write FIELD OP VALUE with OP one of "
            "=, !=, >, >=, <, <=, in, not in (for example 'year>=2020' or 'topic in nlp,vision')"
        )
    field, raw_op, raw_value = match.groups()
    op = _CLI_OPERATORS[raw_op.strip().lower()]
    if op in ("$in", "$nin"):
        return {field: {op: [_parse_value(v) for v in raw_value.split(",") if v.strip()]}}
    return {field: {op: _parse_value(raw_value)}}


def parse_conditions(texts: Sequence[str]) -> dict[str, Any] | None:
    """Several CLI conditions, all of which must hold."""
    if not texts:
        return None
    return {"$and": [parse_condition(text) for text in texts]}


def _parse_value(raw: str) -> Any:
    """Numbers, booleans and null as JSON reads them; anything else (quotes optional) is a string."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    try:
        value = json.loads(raw, parse_constant=_not_json)  # strict JSON: NaN, Infinity stay text
    except ValueError:
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")

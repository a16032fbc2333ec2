"""Metadata filters: a small Mongo-style language compiled to SQLAlchemy expressions.

``{"topic": "nlp", "year": {"$gte": 2020}}`` becomes a parameterised condition on the
documents table; values are always bound parameters, never formatted into SQL. The CLI's
``--where 'year>=2020'`` strings parse into the same structure, so both paths share one
validator and one compiler; ``compile_where`` also takes a list of such strings and parses
them itself, because only with the index's field types at hand can it tell what a bare
``2019`` was meant to be.

Comparisons are typed, so a filter never matches by an accident of SQLite's mixed-type
ordering (where any text sorts above any number, so ``year > 2030`` would match the string
"2019"): an ordering comparison with a number matches only numbers, with a string only
strings, and booleans (which SQLite stores as 0 and 1) have no order and never equal a
number. A value of a kind the field has never held is an error rather than an empty result.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, literal, not_, or_, select, true

from searchkit.errors import FilterError
from searchkit.store import documents, field_values, value_type

__all__ = [
    "Where",
    "FieldTypes",
    "Filter",
    "compile_filter",
    "compile_where",
    "parse_condition",
    "parse_conditions",
    "value_type",
    "BUILTIN_FIELDS",
    "CLI_OPERATORS",
]

# A filter: a Mongo-style dict, or a list of CLI conditions such as ["year>=2020", "topic=nlp"].
Where = Mapping[str, Any] | Sequence[str]
# What the index knows of its fields: their kinds of value ("bool", "number", "string"), or
# just their names. With names only, values are not checked against the field and CLI
# values are never re-read as text.
FieldTypes = Mapping[str, Collection[str]] | Collection[str]

COMPARISONS = {"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin"}
ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}
LOGICAL = {"$and", "$or"}
# Fields of the document itself, filterable alongside its metadata; both are text.
BUILTIN_FIELDS = {"doc_id": documents.c.doc_id, "title": documents.c.title}
_BUILTIN_TYPES = frozenset({"string"})

CLI_OPERATORS = {
    "=": "$eq", "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
    "in": "$in", "not in": "$nin",
}
_CLI_SYNTAX = "write FIELD OP VALUE with OP one of =, !=, >, >=, <, <=, in, not in"
# The likely intent behind operator typos; any other unknown run gets the list alone.
_OPERATOR_HINTS = {"=>": ">=", "=<": "<=", "<>": "!=", "=!": "!=", "!": "!=", "===": "==", ">>": ">", "<<": "<"}
_OPERATOR_CHARS = "=!<>"
# The operator is the whole run of operator characters after the field, so a typo such as
# "=>" is seen as one unknown operator instead of "=" followed by the value ">2020".
_CONDITION = re.compile(
    r"^\s*(?P<field>[^\s=!<>]+)\s*(?:(?P<symbol>[=!<>]+)|\s(?P<word>in|not\s+in)\s)\s*(?P<value>.*?)\s*$",
    re.IGNORECASE,
)
_KIND_NAMES = {"bool": ("boolean", "booleans"), "number": ("number", "numbers"), "string": ("string", "strings")}
_SQLITE_INTEGER = range(-(2**63), 2**63)


@dataclass(frozen=True)
class Filter:
    """A validated filter in both of its forms.

    ``where`` is the Mongo-style structure with CLI conditions already parsed, which the
    in-memory field index (:mod:`searchkit.fieldindex`) evaluates; ``condition`` is the
    same filter as SQL on ``documents``, the reference semantics and the fallback, built
    only when asked for (building the expression costs more than answering the filter
    from memory); ``kinds`` is what the index knew of each field's kinds of value.
    """

    where: Mapping[str, Any]
    kinds: Mapping[str, frozenset[str] | None]

    @cached_property
    def condition(self) -> ColumnElement[bool]:
        return _compile_mapping(self.where, self.kinds)


def compile_filter(where: Where | None, known_fields: FieldTypes) -> Filter | None:
    """Validate a filter and compile it (None when there is nothing to filter on).

    ``known_fields`` maps each metadata field to the kinds of value it holds (as
    ``Store.field_types()`` returns), or is just the field names. Unknown fields are
    errors rather than empty results: a typo in a field name would otherwise look exactly
    like "no matching documents". For the same reason, with types known, comparing a field
    with a kind of value it never holds is an error.
    """
    if where is None:
        return None
    known = _known_types(known_fields)
    if isinstance(where, Sequence) and not isinstance(where, (str, bytes)):
        where = parse_conditions(_as_conditions(where), known)
    elif not isinstance(where, Mapping):
        hint = f"; wrap one condition in a list: [{where!r}]" if isinstance(where, str) else ""
        raise FilterError(
            "a filter must be a dict like {'topic': 'nlp'} or a list of conditions like "
            f"['year>=2020'], got {type(where).__name__}{hint}"
        )
    if not where:
        return None
    _compile_mapping(where, known, build=False)  # every error now, before any search
    return Filter(where, known)


def compile_where(where: Where | None, known_fields: FieldTypes) -> ColumnElement[bool] | None:
    """Validate a filter and compile it to a SQL condition on ``documents`` (see :func:`compile_filter`)."""
    compiled = compile_filter(where, known_fields)
    return None if compiled is None else compiled.condition


def _known_types(known_fields: FieldTypes) -> dict[str, frozenset[str] | None]:
    """Field name to its kinds, None where only the name is known; built-in fields are text."""
    if isinstance(known_fields, Mapping):
        known: dict[str, frozenset[str] | None] = {
            name: None if kinds is None else frozenset(kinds) for name, kinds in known_fields.items()
        }
    else:
        known = dict.fromkeys(known_fields)
    return known | dict.fromkeys(BUILTIN_FIELDS, _BUILTIN_TYPES)


def _as_conditions(where: Sequence[Any]) -> list[str]:
    for item in where:
        if not isinstance(item, str):
            raise FilterError(f"a list filter holds conditions like 'year>=2020', got {item!r}")
    return list(where)


def _compile_mapping(
    where: Mapping[str, Any], known: Mapping[str, frozenset[str] | None], build: bool = True
) -> ColumnElement[bool]:
    """The SQL condition for a filter; with ``build`` False, only the checks that raise FilterError."""
    clauses: list[ColumnElement[bool]] = []
    for key, value in where.items():
        if not isinstance(key, str):
            raise FilterError(f"a filter's keys are field names or $and/$or, got {key!r}")
        if key in LOGICAL:
            if not isinstance(value, Sequence) or isinstance(value, str) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters, got {value!r}")
            parts = [_compile_mapping(_as_mapping(part, key), known, build) for part in value]
            if build:
                clauses.append(and_(*parts) if key == "$and" else or_(*parts))
        elif key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}; use one of {', '.join(sorted(LOGICAL))} at the top level")
        else:
            clause = _compile_field(key, value, known, build)
            if build:
                clauses.append(clause)
    if not build:
        return true()
    return and_(*clauses) if len(clauses) > 1 else clauses[0]


def _as_mapping(part: Any, operator_name: str) -> Mapping[str, Any]:
    if not isinstance(part, Mapping) or not part:
        raise FilterError(f"each item of {operator_name} must be a non-empty filter dict, got {part!r}")
    return part


def _compile_field(
    name: str, condition: Any, known: Mapping[str, frozenset[str] | None], build: bool = True
) -> ColumnElement[bool]:
    if name not in known:
        raise FilterError(f"unknown filter field {name!r}; the index has these fields: {', '.join(sorted(known))}")
    if not isinstance(condition, Mapping):
        condition = {"$eq": condition}
    if not condition:
        raise FilterError(f"empty condition for field {name!r}")
    kinds = known[name]
    for op, value in condition.items():
        _check_operand(name, op, value, kinds)
    if not build:
        return true()

    def compare(op: str, value: Any) -> ColumnElement[bool]:
        if name in BUILTIN_FIELDS:
            return _column_compare(BUILTIN_FIELDS[name], op, value)
        return _metadata_compare(name, op, value, kinds)

    clauses = [_with_null_items(compare, op, value) for op, value in condition.items()]
    return and_(*clauses) if len(clauses) > 1 else clauses[0]


def _with_null_items(compare: Callable[[str, Any], ColumnElement[bool]], op: str, value: Any) -> ColumnElement[bool]:
    """``$in``/``$nin`` lists holding null: null in a list means "missing", as ``$eq: null`` does.

    ``{"n": {"$in": [1, None]}}`` is ``n = 1 or n is missing``, and ``$nin`` its negation;
    taken as plain values, the null would match no row and the filter would silently drop
    the documents without the field.
    """
    if op not in ("$in", "$nin") or all(item is not None for item in value):
        return compare(op, value)
    present = [item for item in value if item is not None]
    either = or_(compare("$eq", None), compare("$in", present)) if present else compare("$eq", None)
    return either if op == "$in" else not_(either)


def _check_operand(name: str, op: Any, value: Any, kinds: frozenset[str] | None) -> None:
    """Every way ``{name: {op: value}}`` can be wrong, raised before any SQL is built."""
    if op not in COMPARISONS:
        raise FilterError(f"unknown operator {op!r} for field {name!r}; use one of {', '.join(sorted(COMPARISONS))}")
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple, set, frozenset)) or not value:
            raise FilterError(f"{op} on field {name!r} takes a non-empty list, got {value!r}")
        items = list(value)
    else:
        items = [value]
    for item in items:
        _check_scalar(name, op, item)
        kind = value_type(item)
        if kinds and kind is not None and kind not in kinds:
            raise FilterError(
                f"field {name!r} holds {_plural(kinds)}; compare it with {_singular(kinds)}, "
                f"not the {_KIND_NAMES[kind][0]} {item!r}"
            )
    if op in ORDERINGS:
        if value is None:
            raise FilterError(f"{op} on field {name!r} needs a value, not null")
        if isinstance(value, bool):
            raise FilterError(f"{op} on field {name!r} orders values, but booleans have no order; use $eq, $ne, $in or $nin")


def _check_scalar(name: str, op: str, value: Any) -> None:
    """A value SQLite can bind: a string it can encode, a 64-bit integer, a float, a bool or null."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise FilterError(f"{op} on field {name!r} compares with a {type(value).__name__}; use a string, number or bool")
    if isinstance(value, int) and not isinstance(value, bool) and value not in _SQLITE_INTEGER:
        raise FilterError(f"{op} on field {name!r} compares with {value}, beyond the 64-bit integers the index stores")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FilterError(f"{op} on field {name!r} compares with {value!r}, which is not valid text ({exc.reason})") from None


def _plural(kinds: Collection[str]) -> str:
    return " and ".join(_KIND_NAMES[kind][1] for kind in sorted(kinds))


def _singular(kinds: Collection[str]) -> str:
    return " or ".join(f"a {_KIND_NAMES[kind][0]}" for kind in sorted(kinds))


def _column_compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    """A comparison on a text column of ``documents`` (checked: the value is a string or null)."""
    if op in ("$in", "$nin"):  # the list holds no null (see _with_null_items)
        matches = column.in_(list(value))
        return matches if op == "$in" else or_(column.is_(None), not_(matches))
    if value is None and op in ("$eq", "$ne"):
        return column.is_(None) if op == "$eq" else column.is_not(None)
    if op == "$eq":
        return column == value
    if op == "$ne":
        return or_(column.is_(None), column != value)
    return ORDERINGS[op](column, value)


def _metadata_compare(name: str, op: str, value: Any, kinds: frozenset[str] | None) -> ColumnElement[bool]:
    """A comparison on a metadata field, through the (field, value) index of ``field_values``.

    Negative conditions (``$ne``, ``$nin``, ``$eq: null``) are "no row of this field matches
    the positive one", so a document without the field satisfies them, as a missing JSON
    key would.
    """
    if value is None and op in ("$eq", "$ne"):
        positive, negate = "$ne", op == "$eq"  # null: "has a non-null value", negated for $eq
    else:
        positive, negate = {"$ne": "$eq", "$nin": "$in"}.get(op, op), op in ("$ne", "$nin")
    matching = select(field_values.c.document_pk).where(
        field_values.c.name == name, _value_matches(name, positive, value, kinds)
    )
    return documents.c.pk.not_in(matching) if negate else documents.c.pk.in_(matching)


def _value_matches(name: str, op: str, value: Any, kinds: frozenset[str] | None) -> ColumnElement[bool]:
    """The typed condition on a ``field_values`` row for a positive operator.

    Equality needs no type guard for strings (SQLite never finds a number equal to text),
    but orderings do, and so does anything that a 0 or 1 can satisfy on a field that may
    hold both booleans and numbers: there the row's document is asked whether its value is
    a JSON boolean. Fields known to hold only one of the two skip that check.
    """
    column = field_values.c.value
    if op == "$ne":  # only with null: the field has a value
        return column.is_not(None)
    may_mix = kinds is None or {"bool", "number"} <= kinds
    if op in ORDERINGS:
        compare = ORDERINGS[op]
        if isinstance(value, str):
            return and_(func.typeof(column) == "text", compare(column, value))
        condition = and_(func.typeof(column).in_(("integer", "real")), compare(column, value))
        if may_mix and (compare(0, value) or compare(1, value)):
            condition = and_(condition, not_(_holds_bool(name)))
        return condition
    items = [item for item in (value if op == "$in" else [value]) if item is not None]
    parts: list[ColumnElement[bool]] = []
    for kind in ("bool", "number", "string"):
        group = list(dict.fromkeys(item for item in items if value_type(item) == kind))
        if not group:
            continue
        part = column == group[0] if len(group) == 1 else column.in_(group)
        if kind == "bool" and may_mix:
            part = and_(part, _holds_bool(name))
        elif kind == "number" and may_mix and any(item in (0, 1) for item in group):
            part = and_(part, not_(_holds_bool(name)))
        parts.append(part)
    if not parts:  # only nulls in an $in list: no row holds null as a value
        return false()
    return or_(*parts) if len(parts) > 1 else parts[0]


def _holds_bool(name: str) -> ColumnElement[bool]:
    """Whether the document of the current ``field_values`` row holds a JSON boolean in ``name``."""
    source = documents.alias("bool_source")
    entry = func.json_each(source.c.meta).table_valued("key", "type").alias("entry")
    return exists(
        select(literal(1))
        .select_from(source.join(entry, true()))
        .where(source.c.pk == field_values.c.document_pk, entry.c.key == name, entry.c.type.in_(("true", "false")))
    )


def parse_condition(text: str, field_types: FieldTypes | None = None) -> dict[str, Any]:
    """Parse one CLI condition such as ``year>=2020``, ``topic=nlp`` or ``lang in en,de``.

    Numbers, booleans and null are typed; anything else is a string (quotes optional).
    With ``field_types`` (as ``compile_where`` takes them), an unquoted value of a kind the
    field never holds is read as the text written when the field holds strings, so
    ``zip=02139`` and ``zip=2019`` both compare with the string stored. An operator the
    grammar does not know, or a value that starts with an operator character, is an error:
    those are typos (``year=>2020``, ``year>>3``) that would otherwise filter silently wrong.
    """
    if not isinstance(text, str):
        raise FilterError(f"a filter condition is a string like 'year>=2020', got {type(text).__name__}")
    match = _CONDITION.match(text)
    if not match:
        raise FilterError(f"cannot parse filter {text!r}; {_CLI_SYNTAX} (for example 'year>=2020' or 'topic in nlp,vision')")
    field, symbol, raw_value = match["field"], match["symbol"], match["value"]
    written = symbol or " ".join(match["word"].lower().split())
    if written not in CLI_OPERATORS:
        hint = f" (did you mean {_OPERATOR_HINTS[written]!r}?)" if written in _OPERATOR_HINTS else ""
        raise FilterError(f"unknown operator {written!r} in filter {text!r}{hint}; {_CLI_SYNTAX}")
    op = CLI_OPERATORS[written]
    kinds = _known_types(field_types or ()).get(field)
    if op in ("$in", "$nin"):
        items = [item for item in raw_value.split(",") if item.strip()]
        if not items:
            raise FilterError(f"filter {text!r} lists no values after {written!r}; write for example 'topic in nlp,vision'")
        value: Any = [_cli_value(text, item, kinds) for item in items]
    else:
        value = _cli_value(text, raw_value, kinds)
    _check_operand(field, op, value, kinds)  # so that a condition that parses also compiles
    return {field: {op: value}}


def parse_conditions(texts: Sequence[str], field_types: FieldTypes | None = None) -> dict[str, Any] | None:
    """Several CLI conditions, all of which must hold."""
    if not texts:
        return None
    return {"$and": [parse_condition(text, field_types) for text in texts]}


def _cli_value(condition: str, raw: str, kinds: frozenset[str] | None) -> Any:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]  # quoted: the text as written, whatever it looks like
    if raw and raw[0] in _OPERATOR_CHARS:
        raise FilterError(
            f"filter {condition!r} compares with {raw!r}, which starts with {raw[0]!r}: is the operator mistyped? "
            f"{_CLI_SYNTAX}, and quote the value if you mean the text ('{raw}')"
        )
    value = _parse_value(raw)
    if kinds and value is not None and value_type(value) not in kinds and "string" in kinds:
        return raw  # the field holds text: "2019" was meant as written, not as a number
    return value


def _parse_value(raw: str) -> Any:
    """Numbers, booleans and null as JSON reads them; anything else is a string."""
    try:
        value = json.loads(raw, parse_constant=_not_json)  # strict JSON: NaN, Infinity stay text
    except (ValueError, RecursionError):
        return raw
    return value if isinstance(value, (int, float, bool)) or value is None else raw


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")

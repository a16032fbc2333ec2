from __future__ import annotations

import pytest

from conftest import ANIMALS, SMALL_CORPUS
from searchkit import FilterError, Index
from searchkit.filters import compile_where, parse_condition, parse_conditions

FIELDS = {"topic", "year", "legs"}
HOSTILE = "x' OR 1=1 --"
LACKING_LEGS = {d.id for d in SMALL_CORPUS if "legs" not in d.metadata}


def matching(index: Index, where: dict) -> set[str]:
    return {h.doc_id for h in index.search("anything", k=100, where=where)}


# CLI conditions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("topic=nlp", {"topic": {"$eq": "nlp"}}),
        ("topic == nlp", {"topic": {"$eq": "nlp"}}),
        ("topic!=nlp", {"topic": {"$ne": "nlp"}}),
        ("year>2020", {"year": {"$gt": 2020}}),
        ("year >= 2020", {"year": {"$gte": 2020}}),
        ("year<2020.5", {"year": {"$lt": 2020.5}}),
        ("  year <= -3  ", {"year": {"$lte": -3}}),
        ("lang in en,de", {"lang": {"$in": ["en", "de"]}}),
        ("lang not in en, de ,", {"lang": {"$nin": ["en", "de"]}}),
        ("lang IN en", {"lang": {"$in": ["en"]}}),
        ("lang NOT IN en", {"lang": {"$nin": ["en"]}}),
        ("n in 1, 2.5, true, null, 'x'", {"n": {"$in": [1, 2.5, True, None, "x"]}}),
        ("title=a=b", {"title": {"$eq": "a=b"}}),
        ("title=hello world", {"title": {"$eq": "hello world"}}),
        ("doc_id=", {"doc_id": {"$eq": ""}}),
    ],
)
def test_parse_condition_operators(text: str, expected: dict) -> None:
    assert parse_condition(text) == expected


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("2020", 2020),
        ("-1.5", -1.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"2020"', "2020"),
        ("'true'", "true"),
        ('"  spaced, with comma "', "  spaced, with comma "),
        ("'null'", "null"),
        ("nlp", "nlp"),
        ("True", "True"),
        ("01", "01"),
        ("[1, 2]", "[1, 2]"),
        ('{"a": 1}', '{"a": 1}'),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("-Infinity", "-Infinity"),
        ('"', '"'),
        ("'half", "'half"),
    ],
)
def test_parse_condition_values(raw: str, value: object) -> None:
    parsed = parse_condition(f"field={raw}")["field"]["$eq"]
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["topic", "", "   ", "=nlp", ">= 2020", "year 2020", "lang in", "a b=c"])
def test_unparseable_condition_explains_the_syntax(text: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_condition(text)
    message = str(error.value)
    assert message.startswith(f"cannot parse filter {text!r}; write FIELD OP VALUE")
    assert "=, !=, >, >=, <, <=, in, not in" in message and "year>=2020" in message


def test_parse_conditions_joins_with_and() -> None:
    assert parse_conditions([]) is None
    assert parse_conditions(["year>=2020", "topic in animals,astronomy"]) == {
        "$and": [{"year": {"$gte": 2020}}, {"topic": {"$in": ["animals", "astronomy"]}}]
    }
    with pytest.raises(FilterError, match="cannot parse filter 'oops'"):
        parse_conditions(["year>=2020", "oops"])


def test_parsed_conditions_filter_searches(small_index: Index) -> None:
    where = parse_conditions(["year>=2020", "topic in animals,astronomy"])
    assert matching(small_index, where) == {"dog", "parrot", "black-hole"}
    assert matching(small_index, parse_conditions(["legs != 4"])) == {"parrot"} | LACKING_LEGS
    assert matching(small_index, parse_conditions(["title='Black holes'"])) == {"black-hole"}


# Validation


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"colour": "red"}, r"^unknown filter field 'colour'; the index has these fields: doc_id, legs, title, topic, year$"),
        ({"topic": {"$regex": "a.*"}}, r"^unknown operator '\$regex' for field 'topic'; use one of \$eq, \$gt, \$gte, \$in"),
        ({"$not": {"topic": "x"}}, r"^unknown filter operator '\$not'; use one of \$and, \$or at the top level"),
        ({"topic": {"$in": "animals"}}, r"^\$in on field 'topic' takes a non-empty list, got 'animals'$"),
        ({"topic": {"$nin": []}}, r"^\$nin on field 'topic' takes a non-empty list, got \[\]$"),
        ({"topic": {"$in": [["a"]]}}, r"^\$in on field 'topic' compares with a list; use a string, number or bool$"),
        ({"$and": {"topic": "x"}}, r"^\$and takes a non-empty list of filters, got \{'topic': 'x'\}$"),
        ({"$and": "topic=x"}, r"^\$and takes a non-empty list of filters, got 'topic=x'$"),
        ({"$or": []}, r"^\$or takes a non-empty list of filters, got \[\]$"),
        ({"$and": ["topic=x"]}, r"^each item of \$and must be a non-empty filter dict, got 'topic=x'$"),
        ({"$or": [{"topic": "x"}, {}]}, r"^each item of \$or must be a non-empty filter dict, got \{\}$"),
        ({"topic": {}}, r"^empty condition for field 'topic'$"),
        ({"topic": ["a", "b"]}, r"^\$eq on field 'topic' compares with a list"),
        ({"year": {"$gt": None}}, r"^\$gt on field 'year' needs a value, not null$"),
        ({"$and": [{"year": 1}, {"$or": [{"nope": 1}]}]}, r"^unknown filter field 'nope'"),
    ],
)
def test_bad_filters_are_filter_errors(where: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_where(where, FIELDS)


@pytest.mark.parametrize("where", ["topic=nlp", ["topic", "nlp"], 42])
def test_a_filter_must_be_a_dict(where: object) -> None:
    with pytest.raises(FilterError, match=rf"^a filter must be a dict like \{{'topic': 'nlp'\}}, got {type(where).__name__}$"):
        compile_where(where, FIELDS)


def test_no_filter_compiles_to_nothing() -> None:
    assert compile_where(None, FIELDS) is None
    assert compile_where({}, FIELDS) is None


def test_an_index_with_no_metadata_lists_only_builtin_fields() -> None:
    with pytest.raises(FilterError, match="the index has these fields: doc_id, title$"):
        compile_where({"topic": "x"}, set())


# Injection


@pytest.mark.parametrize(
    "where",
    [
        {"topic": HOSTILE},
        {"topic": {"$in": ["animals", HOSTILE]}},
        {"doc_id": {"$ne": HOSTILE}},
        {"$or": [{"title": HOSTILE}, {"year": {"$gte": HOSTILE}}]},
    ],
)
def test_values_are_bound_parameters_not_sql(where: dict) -> None:
    compiled = compile_where(where, FIELDS).compile()
    sql = str(compiled)
    assert HOSTILE not in sql and "1=1" not in sql
    assert HOSTILE in compiled.params.values() or any(
        isinstance(v, (list, tuple)) and HOSTILE in v for v in compiled.params.values()
    )


def test_field_names_are_bound_too() -> None:
    name = "a\") OR 1=1 --"
    sql = str(compile_where({name: 1}, {name}).compile())
    assert "1=1" not in sql


def test_hostile_values_match_nothing(small_index: Index) -> None:
    assert small_index.search("cats", k=10, where={"topic": HOSTILE}) == []
    assert small_index.search("cats", k=10, where={"doc_id": HOSTILE}) == []
    assert small_index.search("cats", k=10, where={"topic": {"$in": [HOSTILE, "x' OR '1'='1"]}}) == []
    hits = small_index.search("cats", k=10, where={"topic": "animals"})
    assert sorted(h.doc_id for h in hits) == sorted(d.id for d in ANIMALS)
    assert len(small_index) == len(SMALL_CORPUS), "the table is untouched"


# Semantics on a real index


def test_negations_include_documents_lacking_the_field(small_index: Index) -> None:
    assert len(LACKING_LEGS) == 7
    assert matching(small_index, {"legs": {"$ne": 4}}) == {"parrot"} | LACKING_LEGS
    assert matching(small_index, {"legs": {"$nin": [4]}}) == {"parrot"} | LACKING_LEGS
    assert matching(small_index, {"legs": {"$nin": [2, 4]}}) == LACKING_LEGS
    assert matching(small_index, {"legs": {"$in": [2, 4]}}) == {"cat", "dog", "parrot"}
    assert matching(small_index, {"legs": {"$lt": 10}}) == {"cat", "dog", "parrot"}


def test_null_means_missing(small_index: Index) -> None:
    assert matching(small_index, {"legs": None}) == LACKING_LEGS
    assert matching(small_index, {"legs": {"$ne": None}}) == {"cat", "dog", "parrot"}


def test_ranges_combine_and_builtin_fields_filter(small_index: Index) -> None:
    assert matching(small_index, {"year": {"$gte": 2015, "$lt": 2019}}) == {"photosynthesis", "volcano", "rust"}
    assert matching(small_index, {"doc_id": {"$in": ["sql", "cat"]}, "year": {"$lt": 2000}}) == {"sql"}
    assert matching(small_index, {"title": "Espresso"}) == {"espresso"}
    assert matching(small_index, {"$or": [{"topic": "cooking"}, {"year": 1986}]}) == {"bread", "espresso", "sql"}

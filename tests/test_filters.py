from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from conftest import ANIMALS, SMALL_CORPUS
from searchkit import Document, FilterError, Index
from searchkit.filters import compile_where, parse_condition, parse_conditions, value_type

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


@pytest.mark.parametrize(
    ("where", "suffix"),
    [("topic=nlp", r"str; wrap one condition in a list: \['topic=nlp'\]"), (42, "int"), (b"topic=nlp", "bytes")],
)
def test_a_filter_must_be_a_dict_or_a_list_of_conditions(where: object, suffix: str) -> None:
    with pytest.raises(FilterError, match=r"^a filter must be a dict like \{'topic': 'nlp'\} or a list of conditions "
                                          rf"like \['year>=2020'\], got {suffix}$"):
        compile_where(where, FIELDS)


def test_a_list_filter_holds_cli_conditions() -> None:
    with pytest.raises(FilterError, match="^cannot parse filter 'topic'"):
        compile_where(["topic", "nlp"], FIELDS)
    with pytest.raises(FilterError, match=r"^a list filter holds conditions like 'year>=2020', got \{'topic': 'x'\}$"):
        compile_where(["year>=2020", {"topic": "x"}], FIELDS)
    assert compile_where([], FIELDS) is None
    assert str(compile_where(["year>=2020", "topic=nlp"], FIELDS)) == str(
        compile_where({"$and": [{"year": {"$gte": 2020}}, {"topic": {"$eq": "nlp"}}]}, FIELDS)
    )


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


def test_null_in_a_list_means_missing_too(small_index: Index) -> None:
    assert matching(small_index, {"legs": {"$in": [None]}}) == LACKING_LEGS
    assert matching(small_index, {"legs": {"$in": [2, None]}}) == {"parrot"} | LACKING_LEGS
    assert matching(small_index, {"legs": {"$nin": [None]}}) == {"cat", "dog", "parrot"}
    assert matching(small_index, {"legs": {"$nin": [4, None]}}) == {"parrot"}
    assert matching(small_index, ["legs in 2, null"]) == {"parrot"} | LACKING_LEGS
    assert matching(small_index, {"title": {"$in": ["Cats", None]}}) == {"cat"}
    assert matching(small_index, {"title": {"$nin": ["Cats", None]}}) == {d.id for d in SMALL_CORPUS} - {"cat"}


def test_ranges_combine_and_builtin_fields_filter(small_index: Index) -> None:
    assert matching(small_index, {"year": {"$gte": 2015, "$lt": 2019}}) == {"photosynthesis", "volcano", "rust"}
    assert matching(small_index, {"doc_id": {"$in": ["sql", "cat"]}, "year": {"$lt": 2000}}) == {"sql"}
    assert matching(small_index, {"title": "Espresso"}) == {"espresso"}
    assert matching(small_index, {"$or": [{"topic": "cooking"}, {"year": 1986}]}) == {"bread", "espresso", "sql"}


# Operator typos in CLI conditions


@pytest.mark.parametrize(
    ("text", "written", "hint"),
    [
        ("year>>3", ">>", " (did you mean '>'?)"),
        ("year=>2020", "=>", " (did you mean '>='?)"),
        ("year=<2020", "=<", " (did you mean '<='?)"),
        ("year<>2020", "<>", " (did you mean '!='?)"),
        ("year =! 2020", "=!", " (did you mean '!='?)"),
        ("year!2020", "!", " (did you mean '!='?)"),
        ("year===2020", "===", " (did you mean '=='?)"),
        ("year><2020", "><", ""),
        ("title!==x", "!==", ""),
    ],
)
def test_unknown_operators_are_errors_that_suggest_the_intended_one(text: str, written: str, hint: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_condition(text)
    assert str(error.value) == (
        f"unknown operator {written!r} in filter {text!r}{hint}; "
        "write FIELD OP VALUE with OP one of =, !=, >, >=, <, <=, in, not in"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("year> >3", ">3"), ("year = =2020", "=2020"), ("title= <b>", "<b>"), ("lang in en, !de", "!de"), ("x>= >=1", ">=1")],
)
def test_a_value_starting_with_an_operator_character_is_an_error(text: str, value: str) -> None:
    with pytest.raises(FilterError) as error:
        parse_condition(text)
    message = str(error.value)
    assert message.startswith(f"filter {text!r} compares with {value!r}, which starts with {value[0]!r}: is the operator mistyped?")
    assert message.endswith(f"quote the value if you mean the text ('{value}')")


def test_quoted_values_may_start_with_operator_characters() -> None:
    assert parse_condition("title='<b>'") == {"title": {"$eq": "<b>"}}
    assert parse_condition('tag in ">3", a') == {"tag": {"$in": [">3", "a"]}}
    assert parse_condition("expr=a>b") == {"expr": {"$eq": "a>b"}}


# Types of values


@pytest.mark.parametrize(
    ("value", "kind"),
    [(True, "bool"), (False, "bool"), (0, "number"), (1, "number"), (2.5, "number"), ("2019", "string"), ("", "string"), (None, None)],
)
def test_value_type(value: object, kind: str | None) -> None:
    assert value_type(value) == kind


# A collection whose fields hold mixed kinds: "year" is a number except in one source that
# wrote it as text, and "flag" is a boolean in some documents and a number in others.
TYPED = [
    Document("old", "An old report on rainfall in the valley.", "Old", {"year": 1990, "flag": True, "zip": "02139"}),
    Document("scraped", "A scraped page about river levels.", "Scraped", {"year": "2019", "flag": 1, "zip": "2019"}),
    Document("new", "A new survey of mountain snow.", "New", {"year": 2021, "flag": False, "zip": "10001", "note": None}),
    Document("zero", "A count of birds that found zero nests.", "Zero", {"year": 2005.5, "flag": 0}),
    Document("bare", "A page with no metadata at all.", "Bare", {}),
]
TYPED_KINDS = {
    "year": frozenset({"number", "string"}),
    "flag": frozenset({"bool", "number"}),
    "zip": frozenset({"string"}),
    "note": frozenset(),
}


@pytest.fixture(scope="module")
def typed_index(tmp_path_factory: pytest.TempPathFactory, embedder) -> Iterator[Index]:
    index = Index.create(tmp_path_factory.mktemp("typed") / "index", model=embedder)
    index.add(TYPED)
    yield index
    index.close()


def matching_by_names(index: Index, where: object) -> set[str]:
    """Through ``Index.search``, which compiles the filter with the store's field names."""
    return {h.doc_id for h in index.search("anything", k=100, where=where)}


def matching_by_types(index: Index, where: object) -> set[str]:
    """Compiled with the store's field types, as ``Index`` should once it passes them."""
    ids = index.store.chunk_ids_where(compile_where(where, index.store.field_types()))
    return {row.doc_id for row in index.store.chunk_rows(ids).values()}


EVERYTHING = {d.id for d in TYPED}


@pytest.mark.parametrize("matching", [matching_by_names, matching_by_types])
@pytest.mark.parametrize(
    ("where", "expected"),
    [
        # Orderings match only values of the compared kind: text no longer sorts above every number.
        ({"year": {"$gt": 2030}}, set()),
        ({"year": {"$gte": 2020}}, {"new"}),
        ({"year": {"$lt": 2000}}, {"old"}),
        ({"year": {"$gte": 1990, "$lt": 2010}}, {"old", "zero"}),
        ({"year": {"$gte": "2000"}}, {"scraped"}),
        ({"year": {"$lt": "3"}}, {"scraped"}),
        # Equality never crosses kinds.
        ({"year": 2019}, set()),
        ({"year": "2019"}, {"scraped"}),
        ({"year": {"$in": [2019, 2021]}}, {"new"}),
        ({"year": {"$ne": 2021}}, EVERYTHING - {"new"}),
        # Booleans are stored as 0 and 1 but never match numbers, nor numbers booleans.
        ({"flag": True}, {"old"}),
        ({"flag": False}, {"new"}),
        ({"flag": 1}, {"scraped"}),
        ({"flag": 1.0}, {"scraped"}),
        ({"flag": 0}, {"zero"}),
        ({"flag": {"$in": [True, 0]}}, {"old", "zero"}),
        ({"flag": {"$ne": True}}, EVERYTHING - {"old"}),
        ({"flag": {"$nin": [1, False]}}, {"old", "zero", "bare"}),
        ({"flag": {"$gte": 1}}, {"scraped"}),
        ({"flag": {"$lt": 1}}, {"zero"}),
        ({"flag": {"$gt": -5, "$lt": 5}}, {"scraped", "zero"}),
        ({"flag": None}, {"bare"}),
        ({"note": None}, EVERYTHING),
        ({"note": {"$ne": None}}, set()),
    ],
)
def test_comparisons_are_typed(typed_index: Index, matching, where: dict, expected: set[str]) -> None:
    assert matching(typed_index, where) == expected


@pytest.mark.parametrize("where", [{"flag": {"$gt": True}}, {"flag": {"$lte": False}}])
def test_booleans_have_no_order(where: dict) -> None:
    op = next(iter(where["flag"]))
    with pytest.raises(FilterError, match=rf"^\{op} on field 'flag' orders values, but booleans have no order; use \$eq, \$ne, \$in or \$nin$"):
        compile_where(where, TYPED_KINDS)
    with pytest.raises(FilterError, match="booleans have no order"):
        compile_where(where, set(TYPED_KINDS))
    with pytest.raises(FilterError, match=r"^\$gte on field 'flag' orders values, but booleans have no order"):
        parse_condition("flag>=true")


@pytest.mark.parametrize("text", ["lang in ,", "lang not in  , ,"])
def test_an_in_list_needs_values(text: str) -> None:
    with pytest.raises(FilterError, match=rf"^filter {text!r} lists no values after '(not )?in'; write for example"):
        parse_condition(text)


def test_integers_beyond_64_bits_are_errors_not_crashes() -> None:
    with pytest.raises(FilterError, match=r"^\$gt on field 'year' compares with 18446744073709551616, beyond the 64-bit"):
        compile_where({"year": {"$gt": 2**64}}, TYPED_KINDS)
    with pytest.raises(FilterError, match="beyond the 64-bit"):
        compile_where(["year>99999999999999999999"], TYPED_KINDS)


# Field types in the store


def test_the_store_records_the_kinds_each_field_holds(typed_index: Index) -> None:
    assert typed_index.store.field_types() == TYPED_KINDS
    assert typed_index.store.field_names() == set(TYPED_KINDS)


def test_field_kinds_accumulate_over_writes(make_index) -> None:
    index = make_index([Document("a", "Alpha text.", "", {"n": 1})])
    assert index.store.field_types() == {"n": frozenset({"number"})}
    index.add([Document("b", "Beta text.", "", {"n": None, "m": "x"})])
    assert index.store.field_types() == {"n": frozenset({"number"}), "m": frozenset({"string"})}
    index.add([Document("a", "Alpha text.", "", {"n": "one", "flag": True})])  # metadata-only update
    assert index.store.field_types() == {
        "n": frozenset({"number", "string"}), "m": frozenset({"string"}), "flag": frozenset({"bool"}),
    }


def test_old_stores_gain_field_types_on_open(make_index) -> None:
    index = make_index(TYPED)
    path = index.store.path
    index.close()
    with sqlite3.connect(path) as db:  # as written before field types (and field values) existed
        db.execute("ALTER TABLE fields DROP COLUMN types")
        db.execute("DROP TABLE field_values")
    db.close()
    reopened = Index.open(path.parent, model=index.embedder)
    try:
        assert reopened.store.field_types() == TYPED_KINDS
        assert matching_by_types(reopened, {"flag": True}) == {"old"}
        assert matching_by_types(reopened, {"year": {"$gte": 2020}}) == {"new"}
    finally:
        reopened.close()


# Compiling with field types


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"year": {"$gte": "2020"}}, "field 'year' holds numbers; compare it with a number, not the string '2020'"),
        ({"year": {"$in": [2020, "2021"]}}, "field 'year' holds numbers; compare it with a number, not the string '2021'"),
        ({"year": {"$ne": True}}, "field 'year' holds numbers; compare it with a number, not the boolean True"),
        ({"topic": 7}, "field 'topic' holds strings; compare it with a string, not the number 7"),
        ({"flag": "yes"}, "field 'flag' holds booleans and numbers; compare it with a boolean or a number, not the string 'yes'"),
        ({"doc_id": 5}, "field 'doc_id' holds strings; compare it with a string, not the number 5"),
        ({"title": {"$gt": 1.5}}, "field 'title' holds strings; compare it with a string, not the number 1.5"),
        (["year>=20x0"], "field 'year' holds numbers; compare it with a number, not the string '20x0'"),
        (["year='2020'"], "field 'year' holds numbers; compare it with a number, not the string '2020'"),
    ],
)
def test_a_value_of_a_kind_the_field_never_holds_is_an_error(where: object, message: str) -> None:
    kinds = {"year": {"number"}, "topic": {"string"}, "flag": {"bool", "number"}}
    with pytest.raises(FilterError) as error:
        compile_where(where, kinds)
    assert str(error.value) == message


def test_fields_of_mixed_or_unknown_kinds_take_any_value() -> None:
    for where in ({"year": "2019"}, {"year": 2019}, {"note": "x"}, {"note": {"$gt": 3}}):
        assert compile_where(where, TYPED_KINDS) is not None
        assert compile_where(where, set(TYPED_KINDS)) is not None
    with pytest.raises(FilterError, match="^field 'doc_id' holds strings"):  # built-in fields are always text
        compile_where({"doc_id": 5}, set(TYPED_KINDS))


@pytest.mark.parametrize(
    ("text", "kinds", "expected"),
    [
        ("zip=2019", {"string"}, "2019"),
        ("zip=02139", {"string"}, "02139"),
        ("zip=1e3", {"string"}, "1e3"),
        ("zip=true", {"string"}, "true"),
        ("zip=null", {"string"}, None),
        ("zip='2019'", {"string"}, "2019"),
        ("zip=2019", {"number", "string"}, 2019),
        ("zip=2019", {"number"}, 2019),
        ("zip=2019", None, 2019),
        ("zip=true", {"bool", "string"}, True),
    ],
)
def test_cli_values_are_read_as_written_on_text_fields(text: str, kinds: set[str] | None, expected: object) -> None:
    field_types = {"zip": kinds} if kinds is not None else {"zip"}
    value = parse_condition(text, field_types)["zip"]["$eq"]
    assert value == expected and type(value) is type(expected)


def test_cli_in_lists_and_builtin_fields_are_read_as_written() -> None:
    assert parse_condition("zip in 2019, 02139, x", {"zip": {"string"}}) == {"zip": {"$in": ["2019", "02139", "x"]}}
    assert parse_condition("doc_id=123") == {"doc_id": {"$eq": "123"}}
    assert parse_condition("title in 1,2", {"year"}) == {"title": {"$in": ["1", "2"]}}
    assert parse_conditions(["zip=2019"], {"zip": {"string"}}) == {"$and": [{"zip": {"$eq": "2019"}}]}


def test_cli_conditions_filter_with_the_store_field_types(typed_index: Index) -> None:
    assert matching_by_types(typed_index, ["zip=2019"]) == {"scraped"}
    assert matching_by_types(typed_index, ["zip in 2019,02139"]) == {"scraped", "old"}
    assert matching_by_types(typed_index, ["year>=2020"]) == {"new"}
    assert matching_by_types(typed_index, ["year>2030"]) == set()
    assert matching_by_types(typed_index, ["flag=true"]) == {"old"}
    assert matching_by_types(typed_index, ["flag=1", "doc_id!=old"]) == {"scraped"}


def test_index_search_takes_cli_conditions(typed_index: Index) -> None:
    assert matching_by_names(typed_index, ["year>=2020"]) == {"new"}
    assert matching_by_names(typed_index, ["flag=true"]) == {"old"}
    with pytest.raises(FilterError, match="did you mean '>='"):
        matching_by_names(typed_index, ["year=>2020"])


def test_index_search_reads_cli_values_with_field_types(typed_index: Index) -> None:
    assert matching_by_names(typed_index, ["zip=2019"]) == {"scraped"}
    with pytest.raises(FilterError, match="^field 'zip' holds strings"):
        matching_by_names(typed_index, {"zip": 2019})

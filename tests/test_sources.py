from __future__ import annotations

import json
import os
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from searchkit import ConfigError, Document, FieldMap, Problem, SourceOptions, read_sources
from searchkit.sources import Sources, source_key


def key(path: Path) -> str:
    """The stable name of a path outside the working directory: absolute, symlinks resolved."""
    return Path(os.path.realpath(path)).as_posix()


def read(*paths: str | Path, **options: object) -> tuple[list[Document], list[Problem]]:
    items = list(read_sources(paths, SourceOptions(**options)))
    assert all(isinstance(item, (Document, Problem)) for item in items)
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Problem)]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def jsonl(*records: object) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    write(root / "a.txt", "Plain text.\n# not a title in a txt file\n")
    write(root / "z.md", "Intro line\n\n## Subheading\n# Main Title  \nBody.\n")
    write(root / "sub" / "b.txt", "Nested text.")
    write(root / "sub" / "deeper" / "c.jsonl", jsonl({"id": "c1", "text": "deep record"}))
    write(root / "sub" / "notes.markdown", "# Notes\nbody")
    write(root / "ignored.pdf", "%PDF-1.4 not matched by the default include globs")
    write(root / "ignored.log", "not matched either")
    write(root / ".hidden.txt", "hidden file")
    write(root / ".git" / "config.txt", "inside a hidden folder")
    return root


# Directories


def test_directory_is_read_recursively_files_before_subfolders(tree: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    docs, problems = read("docs")
    assert problems == []
    assert [d.id for d in docs] == ["docs/a.txt", "docs/z.md", "docs/sub/b.txt", "docs/sub/notes.markdown", "c1"]
    by_id = {d.id: d for d in docs}
    assert by_id["docs/sub/b.txt"].text == "Nested text."
    assert by_id["docs/sub/b.txt"].origin == "docs/sub/b.txt"
    assert by_id["c1"].origin == "docs/sub/deeper/c.jsonl:1"


def test_ids_outside_the_working_directory_are_absolute(tree: Path) -> None:
    docs, _ = read(tree / "sub")
    assert [d.id for d in docs] == [f"{key(tree)}/sub/b.txt", f"{key(tree)}/sub/notes.markdown", "c1"]


def test_hidden_files_and_folders_are_skipped_by_default_only(tree: Path) -> None:
    docs, _ = read(tree)
    assert not any("hidden" in d.text for d in docs)
    docs, problems = read(tree, exclude=())
    names = {Path(d.id).name for d in docs if d.id != "c1"}
    assert {".hidden.txt", "config.txt"} <= names and problems == []


def test_include_and_exclude_globs_apply_to_files_and_folders(tree: Path) -> None:
    docs, problems = read(tree, include=("*.txt",))
    assert [Path(d.id).name for d in docs] == ["a.txt", "b.txt"] and problems == []
    docs, _ = read(tree, exclude=(".*", "sub"))
    assert [Path(d.id).name for d in docs] == ["a.txt", "z.md"]
    docs, _ = read(tree, include=("*.jsonl", "*.markdown"), exclude=(".*", "deeper"))
    assert [d.id for d in docs] == [f"{key(tree)}/sub/notes.markdown"]
    # a file matched by include but given explicitly is read whatever the globs say
    docs, _ = read(tree / ".hidden.txt")
    assert docs[0].text == "hidden file"


def test_globs_ignore_case(tmp_path: Path) -> None:
    write(tmp_path / "README.MD", "# Upper\nbody")
    docs, problems = read(tmp_path)
    assert problems == [] and [d.title for d in docs] == ["Upper"]


def test_a_directory_named_like_a_file_is_walked_not_read(tmp_path: Path) -> None:
    write(tmp_path / "x.txt" / "inner.txt", "inside")
    docs, problems = read(tmp_path / "x.txt")
    assert problems == [] and [d.text for d in docs] == ["inside"]
    docs, problems = read(tmp_path)
    assert problems == [] and [d.id for d in docs] == [f"{key(tmp_path)}/x.txt/inner.txt"]


# Text and markdown


def test_txt_has_no_title_and_format_metadata(tree: Path) -> None:
    (doc,), _ = read(tree / "a.txt")
    assert doc == Document(
        id=key(tree / "a.txt"),
        text="Plain text.\n# not a title in a txt file\n",
        title="",
        metadata={"format": "txt"},
        origin=key(tree / "a.txt"),
        source=key(tree / "a.txt"),
    )


def test_markdown_title_is_the_first_top_level_heading(tree: Path, tmp_path: Path) -> None:
    (doc,), _ = read(tree / "z.md")
    assert doc.title == "Main Title" and doc.metadata == {"format": "md"}
    assert doc.text.startswith("Intro line")
    (doc,), _ = read(tree / "sub" / "notes.markdown")
    assert doc.title == "Notes" and doc.metadata == {"format": "markdown"}
    (doc,), _ = read(write(tmp_path / "plain.md", "#NoSpace\n## Only a subheading\ntext"))
    assert doc.title == ""


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    (doc,), problems = read(write(tmp_path / "bom.md", "\ufeff# Title\nbody".encode()))
    assert problems == [] and doc.text == "# Title\nbody" and doc.title == "Title"


# JSONL


def test_jsonl_default_field_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "records.jsonl", jsonl(
        {"id": "a1", "title": "Alpha", "text": "first", "year": 2020, "score": 1.5, "ok": True, "gone": None,
         "tags": ["x", "y"], "where": {"city": "Oslo"}, "metadata": {"lang": "en", "year": 1999, "ids": [1, 2]}},
        {"_id": "b2", "name": "Named", "body": "second"},
        {"text": "no id here"},
        {"id": "", "content": "empty id"},
        {"id": 7, "title": 8, "contents": "numeric id"},
    ) + "\n   \n")
    docs, problems = read(path)
    assert problems == []
    where = key(path)
    assert docs[0] == Document(
        id="a1", text="first", title="Alpha",
        metadata={"lang": "en", "year": 2020, "ids": "[1, 2]", "score": 1.5, "ok": True, "gone": None,
                  "tags": '["x", "y"]', "where": '{"city": "Oslo"}'},
        origin=f"{where}:1",
        source=where,
    )
    assert (docs[1].id, docs[1].title, docs[1].text, docs[1].metadata) == ("b2", "Named", "second", {})
    assert (docs[2].id, docs[2].origin, docs[2].title) == (f"{where}:3", f"{where}:3", "")
    assert docs[3].id == f"{where}:4" and docs[3].text == "empty id"
    assert (docs[4].id, docs[4].title) == ("7", "8")


def test_beir_corpus_needs_no_options(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.jsonl", jsonl(
        {"_id": "MED-10", "title": "Statin use", "text": "Recent studies have suggested ...", "metadata": {}},
        {"_id": "MED-14", "title": "", "text": "Another abstract."},
    ))
    docs, problems = read(path)
    assert problems == []
    assert [(d.id, d.title, d.text, d.metadata) for d in docs] == [
        ("MED-10", "Statin use", "Recent studies have suggested ...", {}),
        ("MED-14", "", "Another abstract.", {}),
    ]


def test_explicit_field_map_replaces_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "custom.jsonl", jsonl(
        {"pid": "p1", "headline": "Head", "body_text": "the body", "id": "not-the-id", "text": "not the text"},
        {"headline": "No pid", "body_text": "still read"},
        {"pid": "p3", "text": "only the default text field"},
    ))
    fields = FieldMap.of(id="pid", title="headline", text="body_text")
    docs, problems = read(path, fields=fields)
    assert docs[0] == Document("p1", "the body", "Head", {"id": "not-the-id", "text": "not the text"},
                               f"{path.as_posix()}:1", path.as_posix())
    assert (docs[1].id, docs[1].title) == (f"{path.as_posix()}:2", "No pid")
    assert problems == [Problem(path.as_posix(), "no text field (looked for body_text; record has pid, text)", 3)]
    # a role not named keeps its defaults
    assert FieldMap.of(text="body_text") == FieldMap(text=("body_text",))


def test_jsonl_bad_lines_are_problems_and_the_rest_is_read(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "ok1", "text": "good"}).encode(),
        b'{"id": "broken", "text": ',
        b"[1, 2, 3]",
        b'"just a string"',
        json.dumps({"id": "notext", "summary": "s", "year": 1}).encode(),
        json.dumps({"id": "numtext", "text": 42}).encode(),
        json.dumps({"id": "nulltext", "text": None}).encode(),
        b'{"id": "latin1", "text": "caf\xe9"}',
        json.dumps({"id": "ok2", "text": "also good"}).encode(),
    ]
    path = write(tmp_path / "mixed.jsonl", b"\n".join(lines) + b"\n")
    docs, problems = read(path)
    assert [d.id for d in docs] == ["ok1", "ok2"]
    assert docs[1].origin == f"{path.as_posix()}:9"
    where = path.as_posix()
    assert [(p.where, p.line) for p in problems] == [(where, n) for n in (2, 3, 4, 5, 6, 7, 8)]
    reasons = [p.reason for p in problems]
    assert reasons[0] == "malformed JSON (Expecting value at column 26)"
    assert reasons[1] == "expected a JSON object, got list"
    assert reasons[2] == "expected a JSON object, got str"
    assert reasons[3] == "no text field (looked for text, body, content, contents; record has id, summary, year)"
    assert reasons[4] == "field 'text' holds int data, not text"
    assert reasons[5] == "field 'text' holds NoneType data, not text"
    assert reasons[6] == "not valid UTF-8 (byte 0xe9)"
    assert str(problems[0]) == f"{where}:2: malformed JSON (Expecting value at column 26)"


def test_record_with_no_fields_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jsonl", "{}\n")
    assert read(path)[1] == [Problem(path.as_posix(), "no text field (looked for text, body, content, contents; "
                                                      "record has no fields)", 1)]


# CSV


def test_csv_with_header_quotes_and_id_column(tmp_path: Path) -> None:
    path = write(tmp_path / "table.csv",
                 'id,title,text,year\n'
                 'c1,"Hello, world","line one\nline two, with ""quotes""",2020\n'
                 'c2,Plain,simple text,2021\n'
                 '\n'
                 ',Untitled,no id in this row,\n')
    docs, problems = read(path)
    assert problems == []
    assert [(d.id, d.title, d.text, d.metadata) for d in docs] == [
        ("c1", "Hello, world", 'line one\nline two, with "quotes"', {"year": 2020}),
        ("c2", "Plain", "simple text", {"year": 2021}),
        (f"{path.as_posix()}:6", "Untitled", "no id in this row", {"year": None}),
    ]
    assert docs[1].origin == f"{path.as_posix()}:4"


def test_csv_rows_with_the_wrong_number_of_fields_are_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "ragged.csv",
                 "doc_id,body\n"
                 "r1,first\n"
                 "r2,too,many\n"
                 "r3\n"
                 "r4,fourth\n")
    docs, problems = read(path)
    where = path.as_posix()
    assert [(d.id, d.text) for d in docs] == [("r1", "first"), ("r4", "fourth")]
    assert problems == [
        Problem(where, "row has 3 fields, the header has 2", 3),
        Problem(where, "row has 1 fields, the header has 2", 4),
    ]


def test_csv_without_text_column_names_its_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "cols.csv", "id,summary\nx,y\n")
    assert read(path) == ([], [Problem(path.as_posix(), "no text field (looked for text, body, content, contents; "
                                                        "record has id, summary)", 2)])


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_csv_is_a_problem(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "empty.csv", content)
    assert read(path) == ([], [Problem(path.as_posix(), "empty CSV file (no header row)")])


# Whole-file problems


def test_unreadable_file_is_a_problem(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read a chmod 000 file; see the dangling symlink test")
    good = write(tmp_path / "good.txt", "fine")
    locked = write(tmp_path / "locked.txt", "secret")
    locked.chmod(0)
    try:
        docs, problems = read(tmp_path)
    finally:
        locked.chmod(0o644)
    assert [d.id for d in docs] == [good.as_posix()]
    assert problems == [Problem(locked.as_posix(), "cannot read file: Permission denied")]


def test_dangling_symlink_is_a_problem_and_the_rest_is_read(tmp_path: Path) -> None:
    write(tmp_path / "good.txt", "fine")
    link = tmp_path / "gone.txt"
    link.symlink_to(tmp_path / "missing-target.txt")
    docs, problems = read(tmp_path)
    assert [d.text for d in docs] == ["fine"]
    # named by the link, not by the target the user never typed
    broken = Problem(f"{key(tmp_path)}/gone.txt", f"broken symbolic link to {tmp_path / 'missing-target.txt'}")
    assert problems == [broken]
    assert read(link) == ([], [broken])


@pytest.mark.parametrize("name", ["bin.txt", "bin.jsonl", "bin.csv"])
def test_binary_file_is_a_problem(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, b"id,text\nlooks like text\x00\x01\x02 but is not\n")
    assert read(path) == ([], [Problem(path.as_posix(), "binary file (contains NUL bytes), not text")])


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_invalid_utf8_in_text_file_names_the_line(tmp_path: Path, bom: bytes) -> None:
    path = write(tmp_path / "latin.txt", bom + b"line one\nline two\ncaf\xe9 on line three\n")
    write(tmp_path / "ok.txt", "fine")
    docs, problems = read(tmp_path)
    assert [d.text for d in docs] == ["fine"]
    assert problems == [Problem(path.as_posix(), "not valid UTF-8 (byte 0xe9)", 3)]


def test_invalid_utf8_in_csv_is_a_row_problem_on_the_line_of_the_byte(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv",
                 b'id,text\na,caf\xc3\xa9\nb,caf\xe9\nc,"two\nlines \xff"\nd,after\n')
    docs, problems = read(path)
    assert [(d.id, d.text) for d in docs] == [("a", "caf\u00e9"), ("d", "after")]
    assert problems == [Problem(key(path), "not valid UTF-8 (byte 0xe9)", 3),
                        Problem(key(path), "not valid UTF-8 (byte 0xff)", 5)]


def test_invalid_utf8_in_the_csv_header_stops_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.csv", b"id,t\xe9xt\na,b\n")
    assert read(path) == ([], [Problem(key(path), "not valid UTF-8 (byte 0xe9)", 1)])


def test_file_over_the_size_limit_is_a_problem(tmp_path: Path) -> None:
    big = write(tmp_path / "big.txt", "x" * 2001)
    small = write(tmp_path / "small.txt", "x" * 2000)
    docs, problems = read(tmp_path, max_file_bytes=2000)
    assert [d.id for d in docs] == [small.as_posix()]
    assert problems == [Problem(big.as_posix(), "file is 2,001 bytes, over the limit of 2,000")]


def test_unsupported_suffix_given_explicitly_is_a_problem(tmp_path: Path) -> None:
    pdf = write(tmp_path / "paper.PDF", "%PDF")
    bare = write(tmp_path / "README", "no suffix")
    supported = ".txt, .md, .markdown, .jsonl, .csv"
    assert read(pdf, bare) == ([], [
        Problem(pdf.as_posix(), f"unsupported file type .pdf; supported: {supported}"),
        Problem(bare.as_posix(), f"unsupported file type (none); supported: {supported}"),
    ])


def test_nonexistent_path_is_a_problem_and_later_paths_are_read(tmp_path: Path) -> None:
    good = write(tmp_path / "good.md", "# Good\ntext")
    docs, problems = read(tmp_path / "nope", "also/missing.txt", good)
    assert [d.title for d in docs] == ["Good"]
    assert problems == [
        Problem(str(tmp_path / "nope"), "no such file or directory"),
        Problem("also/missing.txt", "no such file or directory"),
    ]
    assert str(problems[1]) == "also/missing.txt: no such file or directory"


def test_unlistable_folder_is_a_problem_not_an_empty_folder(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "good.txt", "fine")
    locked = tmp_path / "locked"
    write(locked / "inside.txt", "unreachable")
    scandir = os.scandir

    def refusing_scandir(path):  # chmod 000 would not stop root, who runs some test machines
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)
    sources = Sources([tmp_path])
    items = list(sources)
    assert [i.text for i in items if isinstance(i, Document)] == ["fine"]
    assert [i for i in items if isinstance(i, Problem)] == [Problem(key(locked), "cannot read folder: Permission denied")]
    assert sources.problem_sources == {key(locked)}


# Streaming: JSONL and CSV are read record by record, whatever their size


def test_jsonl_and_csv_are_not_subject_to_the_file_size_limit(tmp_path: Path) -> None:
    records = write(tmp_path / "records.jsonl", jsonl(*({"id": f"j{n}", "text": "x" * 50} for n in range(40))))
    table = write(tmp_path / "table.csv", "id,text\n" + "".join(f"c{n},{'y' * 50}\n" for n in range(40)))
    docs, problems = read(records, table, max_file_bytes=1000)
    assert problems == [] and len(docs) == 80


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_reading_memory_does_not_grow_with_the_file_size(tmp_path: Path, suffix: str) -> None:
    def write_records(path: Path, count: int) -> Path:
        text = "words of a moderately long record " * 20
        with path.open("w", encoding="utf-8") as file:
            if suffix == ".csv":
                file.write("id,text,year\n")
                file.writelines(f"d{n},{text},{1990 + n % 30}\n" for n in range(count))
            else:
                file.writelines(json.dumps({"id": f"d{n}", "text": text, "year": 1990 + n % 30}) + "\n"
                                for n in range(count))
        return path

    def peak_bytes(path: Path) -> int:
        tracemalloc.start()
        try:
            count = sum(isinstance(item, Document) for item in Sources([path]))
            return tracemalloc.get_traced_memory()[1] if count else -1
        finally:
            tracemalloc.stop()

    small = peak_bytes(write_records(tmp_path / f"small{suffix}", 300))
    big_path = write_records(tmp_path / f"big{suffix}", 6000)
    assert big_path.stat().st_size > 4_000_000
    big = peak_bytes(big_path)
    # Reading the whole file would need at least its size; a stream needs one record's worth.
    assert 0 < big < small + 256 * 1024
    assert big < big_path.stat().st_size / 8


# Typed CSV metadata


def test_csv_columns_get_the_type_all_their_values_share(tmp_path: Path) -> None:
    path = write(tmp_path / "typed.csv",
                 "id,text,year,score,open,published,stamp,zip,mixed,blank\n"
                 "007,first,1990,1.5,true,2019-01-31,2020-05-01T10:30:00,02134,12,\n"
                 "8,second,2019,-2,FALSE,2020-02-29,2020-05-01 11:00Z,10001,n/a,\n"
                 "9,third,2021,,True,,,,3.5,  \n")
    docs, problems = read(path)
    assert problems == []
    assert [d.id for d in docs] == ["007", "8", "9"]  # ids are never converted
    assert [d.metadata for d in docs] == [
        {"year": 1990, "score": 1.5, "open": True, "published": "2019-01-31", "stamp": "2020-05-01T10:30:00",
         "zip": "02134", "mixed": "12", "blank": None},
        {"year": 2019, "score": -2.0, "open": False, "published": "2020-02-29", "stamp": "2020-05-01T11:00:00+00:00",
         "zip": "10001", "mixed": "n/a", "blank": None},
        {"year": 2021, "score": None, "open": True, "published": None, "stamp": None,
         "zip": None, "mixed": "3.5", "blank": None},
    ]
    assert all(type(d.metadata["year"]) is int for d in docs)
    assert type(docs[1].metadata["score"]) is float


def test_csv_values_that_only_look_typed_stay_text(tmp_path: Path) -> None:
    path = write(tmp_path / "texty.csv",
                 "id,title,text,date,huge,nan,yes\n"
                 "1,2020,3,2020-13-45,99999999999999999999,nan,yes\n"
                 "2,1999,4,2020-01-01,1,1,no\n")
    docs, problems = read(path)
    assert problems == []
    # title and text columns keep their text; an impossible date, a number SQLite cannot hold,
    # nan and yes/no do not make a column typed
    assert [(d.title, d.text) for d in docs] == [("2020", "3"), ("1999", "4")]
    assert docs[0].metadata == {"date": "2020-13-45", "huge": "99999999999999999999", "nan": "nan", "yes": "yes"}


def test_csv_types_override_the_guess(tmp_path: Path) -> None:
    path = write(tmp_path / "forced.csv",
                 "id,text,zip,year,rate\n"
                 "a,one,02134,2020,1\n"
                 "b,two,10001,2021,2\n")
    docs, problems = read(path, csv_types={"zip": "int", "year": "str", "rate": "float", "absent": "bool"})
    assert problems == []
    assert [d.metadata for d in docs] == [
        {"zip": 2134, "year": "2020", "rate": 1.0},
        {"zip": 10001, "year": "2021", "rate": 2.0},
    ]


def test_values_that_do_not_parse_under_a_forced_type_are_row_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "forced.csv",
                 "id,text,year,open,when\n"
                 "a,one,2020,true,2020-01-01\n"
                 "b,two,soon,true,2020-01-01\n"
                 "c,three,2021,maybe,2020-01-01\n"
                 "d,four,2022,false,yesterday\n"
                 "e,five,,,\n")
    docs, problems = read(path, csv_types={"year": "int", "open": "bool", "when": "date"})
    where = key(path)
    assert [(d.id, d.metadata) for d in docs] == [
        ("a", {"year": 2020, "open": True, "when": "2020-01-01"}),
        ("e", {"year": None, "open": None, "when": None}),
    ]
    assert problems == [
        Problem(where, "column 'year': 'soon' is not an integer", 3),
        Problem(where, "column 'open': 'maybe' is not true or false", 4),
        Problem(where, "column 'when': 'yesterday' is not an ISO date (YYYY-MM-DD) or datetime", 5),
    ]


def test_unknown_csv_type_is_a_config_error_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"year='integer'.*int, float, bool, date, str"):
        SourceOptions(csv_types={"year": "integer", "title": "str"})


# Stable ids and sources


def test_one_file_has_one_id_however_its_path_is_spelled(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "docs" / "a.md", "# A\ntext")
    monkeypatch.chdir(tmp_path)
    spellings = ["docs/a.md", "./docs/a.md", str(tmp_path / "docs" / "a.md"), "docs/../docs/a.md", "docs"]
    docs, problems = read(*spellings)
    assert problems == []
    assert {(d.id, d.origin, d.source) for d in docs} == {("docs/a.md", "docs/a.md", "docs/a.md")}
    assert len(docs) == len(spellings)


def test_a_symlink_has_the_id_of_its_target(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "real" / "a.txt", "text")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real" / "a.txt")
    monkeypatch.chdir(tmp_path)
    docs, _ = read("link.txt", "real/a.txt")
    assert [d.id for d in docs] == ["real/a.txt", "real/a.txt"]


def test_id_root_sets_what_ids_are_relative_to(tmp_path: Path) -> None:
    inside = write(tmp_path / "corpus" / "sub" / "a.txt", "text")
    outside = write(tmp_path / "elsewhere" / "b.txt", "text")
    records = write(tmp_path / "corpus" / "r.jsonl", '{"text": "no id"}\n{"text": "bad", "id": \n')
    docs, problems = read(inside, outside, records, id_root=tmp_path / "corpus")
    assert [(d.id, d.source, d.origin) for d in docs] == [
        ("sub/a.txt", "sub/a.txt", "sub/a.txt"),
        (key(outside), key(outside), key(outside)),
        ("r.jsonl:1", "r.jsonl", "r.jsonl:1"),
    ]
    assert [(p.where, p.line) for p in problems] == [("r.jsonl", 2)]


def test_source_key_names_files_and_folders(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "docs" / "a.md", "text")
    monkeypatch.chdir(tmp_path)
    assert source_key("docs") == source_key("./docs/") == source_key(tmp_path / "docs") == "docs"
    assert source_key("docs/a.md") == "docs/a.md"
    assert source_key("not/yet/there.txt") == "not/yet/there.txt"
    assert source_key(".") == "."
    assert source_key(tmp_path / "docs" / "a.md", id_root=tmp_path / "docs") == "a.md"
    assert source_key(tmp_path / "docs", id_root=tmp_path / "other") == key(tmp_path / "docs")


def test_records_carry_the_source_of_their_file(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "data" / "r.jsonl", jsonl({"id": "j", "text": "json"}))
    write(tmp_path / "data" / "t.csv", "id,text\nc,csv\n")
    monkeypatch.chdir(tmp_path)
    docs, _ = read("./data")
    assert [(d.id, d.source, d.origin) for d in docs] == [
        ("j", "data/r.jsonl", "data/r.jsonl:1"),
        ("c", "data/t.csv", "data/t.csv:2"),
    ]


def test_documents_built_in_python_have_no_source() -> None:
    doc = Document("x", "text", "title", {"k": 1}, "here")
    assert (doc.origin, doc.source) == ("here", "")


# Sources: what was skipped, what had problems, how much there is


def test_files_skipped_for_their_type_are_counted_by_suffix(tree: Path) -> None:
    write(tree / "img" / "a.png", b"\x89PNG")
    write(tree / "img" / "B.PNG", b"\x89PNG")
    write(tree / "data.json", "{}")
    write(tree / "Makefile", "all:")
    write(tree / ".DS_Store", b"\x00")
    sources = Sources([tree])
    docs = [item for item in sources if isinstance(item, Document)]
    assert len(docs) == 5
    # hidden files and folders (.hidden.txt, .git/, .DS_Store) are excluded on purpose, not counted
    assert sources.skipped_files == Counter({".png": 2, ".pdf": 1, ".log": 1, ".json": 1, "(none)": 1})
    assert list(read_sources([tree])) == list(sources)
    assert Sources([tree], SourceOptions(include=("*.md",))).skipped_files == Counter()


def test_problem_sources_name_the_files_that_had_a_problem(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path / "good.jsonl", jsonl({"id": "g", "text": "fine"}))
    write(tmp_path / "bad.jsonl", jsonl({"id": "b", "text": "fine"}) + "not json\n")
    write(tmp_path / "sub" / "bad.csv", "id,text\nx\n")
    write(tmp_path / "sub" / "ok.md", "fine")
    monkeypatch.chdir(tmp_path)
    sources = Sources([".", "missing.txt"])
    items = list(sources)
    assert sorted(d.id for d in items if isinstance(d, Document)) == ["b", "g", "sub/ok.md"]
    assert sources.problem_sources == {"bad.jsonl", "sub/bad.csv", "missing.txt"}
    write(tmp_path / "bad.jsonl", jsonl({"id": "b", "text": "fixed"}))
    list(sources)  # each pass starts afresh
    assert sources.problem_sources == {"sub/bad.csv", "missing.txt"}


def test_estimate_counts_text_files_and_records(tmp_path: Path) -> None:
    write(tmp_path / "a.md", "one")
    write(tmp_path / "sub" / "b.txt", "two")
    write(tmp_path / "r.jsonl", jsonl(*({"text": str(n)} for n in range(5))))
    write(tmp_path / "no-final-newline.jsonl", '{"text": "a"}\n{"text": "b"}')
    write(tmp_path / "t.csv", "id,text\n1,a\n2,b\n3,c\n")
    write(tmp_path / "skipped.png", b"\x89PNG\n\n\n")
    sources = Sources([tmp_path, tmp_path / "a.md"])
    assert sources.estimate() == 2 + 5 + 2 + 3 + 1
    assert sources.estimate() == sum(isinstance(item, Document) for item in sources)


def test_estimate_is_cheap_on_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("wb") as file:
        block = b'{"text": "' + b"x" * 88 + b'"}\n'
        for _ in range(100):
            file.write(block * 10_000)  # 100 MB in all
    started = time.perf_counter()
    assert Sources([path]).estimate() == 1_000_000
    assert time.perf_counter() - started < 1.0


def test_one_path_alone_is_one_path(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "text")
    assert [d.text for d in Sources(path)] == [d.text for d in Sources(str(path))] == ["text"]

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from searchkit.cli import app
from searchkit.index import MANIFEST_FILE

runner = CliRunner()

RECORDS = [
    {"id": "tea", "title": "Green tea", "text": "Green tea is brewed from unoxidised leaves of Camellia sinensis.", "topic": "drinks", "year": 2018},
    {"id": "chess", "title": "Chess openings", "text": "The Sicilian Defence answers 1.e4 with the c-pawn and fights for the centre.", "topic": "games", "year": 2021},
    {"id": "moon", "title": "The Moon", "text": "The Moon is Earth's only natural satellite and causes ocean tides.", "topic": "space", "year": 2023},
]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n{broken\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "bikes.md").write_text("# Bicycles\n\nA bicycle has two wheels, pedals and a chain drive.\n")
    (folder / "notes" / "blob.txt").write_bytes(b"\x00\x01\x02 not text")
    return folder


@pytest.fixture(scope="module")
def cli_index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = tmp_path_factory.mktemp("cli") / "idx"
    result = invoke("index", corpus_dir, "--index", index, "--quiet")
    assert result.exit_code == 1, result.output  # two inputs were skipped
    return index


DEFAULT_WRITTEN = re.compile(r"\[default: [^\]]*\]")


def test_every_command_and_option_has_visible_help() -> None:
    """Help text everywhere, no '[default: ...]' swallowed by markup, clean usage lines."""
    command = get_command(app)
    top = invoke("--help")
    assert top.exit_code == 0 and "--version" in top.output
    for name, sub in command.commands.items():
        assert sub.help, f"command {name} has no help"
        result = runner.invoke(app, [name, "--help"], terminal_width=1000)  # no wrapping at hyphens
        assert result.exit_code == 0, result.output
        flat = " ".join(result.output.split())
        assert not re.search(r"\s\.(\s|$)", flat), f"{name}: a help line ends with ' .'"
        usage = result.output.splitlines()[0]
        assert "{" not in usage and "<list" not in result.output and "list[" not in result.output, result.output
        for param in sub.params:
            if param.name == "help":
                continue
            text = getattr(param, "help", None)
            assert text, f"{name} {param.name} has no help"
            assert not text.rstrip().endswith(" ."), f"{name} {param.name}: {text!r}"
            for default in DEFAULT_WRITTEN.findall(text):
                assert " ".join(default.split()) in flat, f"{name} {param.name}: {default} is not shown"


def test_arguments_have_metavars_in_usage() -> None:
    assert "Usage: searchkit index [OPTIONS] PATH..." in invoke("index", "--help").output
    assert "Usage: searchkit delete [OPTIONS] ID..." in invoke("delete", "--help").output
    assert "Usage: searchkit search [OPTIONS] QUERY" in invoke("search", "--help").output


def test_version() -> None:
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0 and result.output == f"searchkit {version('searchkit')}\n"


def test_index_reports_added_and_skipped_with_location(corpus_dir: Path, tmp_path: Path) -> None:
    result = invoke("index", corpus_dir, "--index", tmp_path / "idx", "--quiet")
    assert result.exit_code == 1
    assert "4 added, 0 updated, 0 unchanged, 0 pruned, 2 failed" in result.output
    assert "records.jsonl:4: malformed JSON" in result.output
    assert "blob.txt: binary file" in result.output
    again = invoke("index", corpus_dir, "--index", tmp_path / "idx", "--json")
    report = json.loads(again.stdout)
    assert (report["added"], report["unchanged"], report["chunks_added"]) == (0, 4, 0)


def test_search_prints_ranked_hits(cli_index: Path) -> None:
    result = invoke("search", "natural satellite that makes tides", "--index", cli_index, "-k", "2")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(" 1.") and "moon" in first and "The Moon" in first
    assert "topic=space" in result.output


def test_search_json_and_where(cli_index: Path) -> None:
    result = invoke("search", "a drink", "--index", cli_index, "--json", "--where", "year>=2020", "--where", "topic in games,space")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert {h["doc_id"] for h in hits} == {"chess", "moon"}
    assert set(hits[0]) >= {"doc_id", "chunk_id", "score", "text", "title", "metadata"}
    bikes = json.loads(invoke("search", "two wheels and pedals", "-i", cli_index, "--json", "-k", "1").stdout)
    assert bikes[0]["doc_id"].endswith("notes/bikes.md") and bikes[0]["title"] == "Bicycles"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "   "], "the query is empty"),
        (["search", "tea", "--where", "colour=red"], "unknown filter field 'colour'"),
        (["search", "tea", "--where", "year~2020"], "cannot parse filter"),
    ],
)
def test_user_errors_are_one_line_without_traceback(cli_index: Path, args: list[str], message: str) -> None:
    result = invoke(*args, "--index", cli_index)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_and_corrupt_index(tmp_path: Path, cli_index: Path) -> None:
    result = invoke("search", "tea", "--index", tmp_path / "nowhere")
    assert result.exit_code == 2 and "no index at" in result.output and "searchkit index" in result.output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_FILE).write_text("{not json")
    result = invoke("info", "--index", broken)
    assert result.exit_code == 2 and "unreadable" in result.output and "Traceback" not in result.output


def test_info_shows_config_and_counts(cli_index: Path) -> None:
    result = invoke("info", "--index", cli_index)
    assert result.exit_code == 0
    assert "sentence-transformers/all-MiniLM-L6-v2" in result.output
    assert re.search(r"^metadata fields +format \(string\), topic \(string\), year \(number\)$", result.output, re.M)
    assert re.search(r"^documents +4$", result.output, re.M) and re.search(r"^  dimension +384$", result.output, re.M)
    data = json.loads(invoke("info", "--index", cli_index, "--json").stdout)
    assert data["counts"] == {"documents": 4, "chunks": 4, "vectors": 4}
    assert sorted(data["metadata_fields"]) == ["format", "topic", "year"]


def test_delete_and_reindex(corpus_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    invoke("index", corpus_dir, "--index", index, "--quiet")
    result = invoke("delete", "tea", "unknown-id", "--index", index)
    assert result.exit_code == 1 and "deleted 1 documents" in result.output and "unknown-id" in result.output
    (index / "vectors.faiss").unlink()
    result = invoke("reindex", "--index", index)
    assert result.exit_code == 0 and "3 vectors" in result.output
    hits = json.loads(invoke("search", "green tea leaves", "-i", index, "--json").stdout)
    assert "tea" not in {h["doc_id"] for h in hits} and len(hits) == 3


def test_new_index_with_model_option_and_chunking(corpus_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    result = invoke("index", corpus_dir / "records.jsonl", "--index", index, "--model", "all-MiniLM-L6-v2",
                    "--chunk-tokens", "128", "--overlap", "16", "--quiet")
    assert result.exit_code == 1
    config = json.loads((index / MANIFEST_FILE).read_text())["config"]
    assert config["chunking"] == {"max_tokens": 128, "overlap_tokens": 16, "max_chunks": 0}
    result = invoke("index", corpus_dir, "--index", tmp_path / "bad", "--model", str(tmp_path / "no-such-model-dir"))
    assert result.exit_code == 2 and "cannot load embedding model" in result.output


def test_exit_codes_are_documented_constants() -> None:
    from searchkit import cli

    assert (cli.EXIT_SKIPPED, cli.EXIT_ERROR) == (1, 2)
    assert isinstance(cli.app, typer.Typer)


def test_corrupt_store_is_a_clear_error(corpus_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    invoke("index", corpus_dir, "--index", index, "--quiet")
    (index / "store.sqlite").write_bytes(b"this is not a database" * 100)
    for name in ("store.sqlite-wal", "store.sqlite-shm"):
        (index / name).unlink(missing_ok=True)
    result = invoke("search", "tea", "--index", index)
    assert result.exit_code == 2 and "store.sqlite is damaged" in result.output and "cannot be derived" in result.output
    assert "Traceback" not in result.output


def test_searching_with_a_different_model_names_both(cli_index: Path, tmp_path: Path) -> None:
    """A copy of the model with one weight changed is a different model, though name and size agree."""
    import shutil

    from searchkit.embedding import resolve_model

    copy = tmp_path / "tweaked-model"
    shutil.copytree(resolve_model("all-MiniLM-L6-v2"), copy)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: still a valid file
    weights.write_bytes(bytes(data))
    result = invoke("search", "tea", "--index", cli_index, "--model", copy)
    assert result.exit_code == 2
    assert "sentence-transformers/all-MiniLM-L6-v2" in result.output and str(copy) in result.output
    assert "Traceback" not in result.output


def test_commands_that_do_not_embed_never_import_torch(cli_index: Path, tmp_path: Path) -> None:
    """A fresh interpreter runs info, lexical search, delete, reindex and --help: torch stays out."""
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "copy"
    shutil.copytree(cli_index, copy)
    script = f"""
import json, sys
from searchkit.cli import app
loaded = {{}}
for args in (["info", "--index", {str(copy)!r}], ["search", "tea", "--mode", "lexical", "--index", {str(copy)!r}],
             ["delete", "no-such-id", "--index", {str(copy)!r}], ["reindex", "--index", {str(copy)!r}], ["--help"]):
    try:
        app(args, prog_name="searchkit", standalone_mode=False)
    except SystemExit:
        pass
    loaded[args[0]] = "torch" in sys.modules
print(json.dumps(loaded))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    print(loaded)
    assert loaded == {"info": False, "search": False, "delete": False, "reindex": False, "--help": False}
    assert "documents" in result.stdout and "4 vectors" in result.stdout


def test_indexing_only_missing_paths_creates_nothing(tmp_path: Path) -> None:
    result = invoke("index", tmp_path / "nonexistent", "--index", tmp_path / "idx")
    assert result.exit_code == 2 and "nonexistent" in result.output and "nothing was indexed" in result.output
    assert not (tmp_path / "idx").exists()


def test_some_missing_paths_are_reported_as_problems(corpus_dir: Path, tmp_path: Path) -> None:
    result = invoke("index", corpus_dir / "notes", tmp_path / "nonexistent", "--index", tmp_path / "idx", "-q")
    assert result.exit_code == 1 and "nonexistent" in result.output and "1 added" in result.output


def test_an_index_needs_a_folder_of_its_own(corpus_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Some text about tea.")
    for target in (docs, corpus_dir):
        result = invoke("index", docs, "--index", target, "-q")
        assert result.exit_code == 2 and "new or empty folder" in result.output, result.output
    assert sorted(p.name for p in docs.iterdir()) == ["a.txt"]


def test_a_reader_path_that_does_not_exist_is_an_error(cli_index: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "reader"
    result = invoke("ask", "what is tea?", "--index", cli_index, "--reader", missing)
    assert result.exit_code == 2 and str(missing) in result.output and "does not exist" in result.output
    fallback = invoke("ask", "what is tea?", "--index", cli_index, "--reader", "no-such-qa-model")
    assert fallback.exit_code == 0 and "notice: reader 'no-such-qa-model' is not available" in fallback.output


HOSTILE = "\x1b]8;;https://evil.example\x07click here\x1b]8;;\x07 and \x1b[31mred\x1b[0m\r text\x08 end"


def test_terminal_escapes_in_documents_are_not_printed(tmp_path: Path) -> None:
    record = {"id": "evil\x1b[2J", "title": "Title\x1b]0;owned\x07", "text": f"Hostile tea document: {HOSTILE}.",
              "note": "meta\x1b[5mblink"}
    source = tmp_path / "hostile.jsonl"
    source.write_text(json.dumps(record) + "\n")
    index = tmp_path / "idx"
    assert invoke("index", source, "--index", index, "-q").exit_code == 0
    for args in (["search", "hostile tea"], ["search", "hostile tea", "--mode", "lexical"], ["ask", "what is hostile?"]):
        result = invoke(*args, "--index", index)
        assert result.exit_code == 0, result.output
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", result.output), repr(result.output)
        assert "click here" in result.output or args[0] == "ask"
    [hit] = json.loads(invoke("search", "hostile tea", "--index", index, "--json").stdout)
    assert (hit["doc_id"], hit["title"], hit["metadata"]["note"]) == (record["id"], record["title"], record["note"])
    assert HOSTILE in hit["text"]


def test_delete_and_reindex_report_json(corpus_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    invoke("index", corpus_dir, "--index", index, "--quiet")
    result = invoke("delete", "tea", "unknown-id", "--index", index, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"deleted": ["tea"], "not_found": ["unknown-id"], "chunks_removed": 1}
    result = invoke("reindex", "--index", index, "--index-type", "HNSW32", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["vectors"] == 3 and report["vector_index"].startswith("HNSW32")


def test_writers_can_wait_for_the_lock(corpus_dir: Path, tmp_path: Path) -> None:
    import threading
    import time

    from filelock import FileLock

    index = tmp_path / "idx"
    invoke("index", corpus_dir, "--index", index, "--quiet")
    lock = FileLock(index / "write.lock", thread_local=False)  # released from a timer thread
    lock.acquire()
    try:
        result = invoke("delete", "tea", "--index", index)
        assert result.exit_code == 2 and "another process is writing" in result.output, result.output
        started = time.perf_counter()
        result = invoke("delete", "tea", "--index", index, "--wait", "0.5")
        assert result.exit_code == 2 and time.perf_counter() - started >= 0.5
        threading.Timer(0.5, lock.release).start()
        result = invoke("delete", "tea", "--index", index, "--wait", "30")
        assert result.exit_code == 0 and "deleted 1 documents" in result.output, result.output
    finally:
        if lock.is_locked:
            lock.release()


def test_the_oversize_message_names_the_option(corpus_dir: Path, tmp_path: Path) -> None:
    result = invoke("index", corpus_dir / "records.jsonl", "--index", tmp_path / "idx", "--max-doc-chars", "20", "-q")
    assert result.exit_code == 1
    assert "raise --max-doc-chars" in result.output and "max_document_chars" not in result.output


def test_csv_types(tmp_path: Path) -> None:
    table = tmp_path / "papers.csv"
    table.write_text("id,text,year,code\np1,Tea grows on hills.,2020,007\np2,Coffee grows in the tropics.,2021,042\n")
    index = tmp_path / "idx"
    result = invoke("index", table, "--index", index, "--csv-types", "year=int, code=str", "-q")
    assert result.exit_code == 0, result.output
    [hit] = json.loads(invoke("search", "tea", "-i", index, "-k", "1", "--json").stdout)
    assert hit["metadata"] == {"year": 2020, "code": "007"}
    for bad in ("year", "year=", "=int", "year=int,code"):
        result = invoke("index", table, "--index", tmp_path / "other", "--csv-types", bad)
        assert result.exit_code == 2 and "--csv-types takes COLUMN=TYPE" in result.output, (bad, result.output)
    result = invoke("index", table, "--index", tmp_path / "other", "--csv-types", "year=integer")
    assert result.exit_code == 2 and "integer" in result.output
    assert not (tmp_path / "other").exists()


def test_prune_skipped_files_and_warnings(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tea.txt").write_text("Green tea is brewed from leaves.")
    (docs / "moon.txt").write_text("The Moon causes tides.")
    (docs / "photo.png").write_bytes(b"\x89PNG")
    (docs / "data.json").write_text("{}")
    (docs / "more.png").write_bytes(b"\x89PNG")
    (docs / "years.jsonl").write_text('{"id": "a", "text": "alpha", "year": 2020}\n{"id": "b", "text": "beta", "year": "soon"}\n')
    index = tmp_path / "idx"
    result = invoke("index", docs, "--index", index, "-q")
    assert result.exit_code == 0, result.output
    assert "skipped 3 files of other types (.png 2, .json 1)" in result.output
    assert "warning: metadata field 'year'" in result.output
    (docs / "moon.txt").unlink()
    result = invoke("index", docs, "--index", index, "-q")
    assert "0 pruned" in result.output
    result = invoke("index", docs, "--index", index, "-q", "--prune")
    assert result.exit_code == 0 and "1 pruned" in result.output, result.output
    assert json.loads(invoke("info", "-i", index, "--json").stdout)["counts"]["documents"] == 3


def test_chunking_options_apply_to_new_indexes_only(corpus_dir: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    result = invoke("index", corpus_dir / "notes", "--index", index, "--overlap", "16", "-q")
    assert result.exit_code == 1
    chunking = json.loads(invoke("info", "-i", index, "--json").stdout)["config"]["chunking"]
    assert chunking == {"max_tokens": 254, "overlap_tokens": 16, "max_chunks": 0}
    assert invoke("index", corpus_dir / "notes", "--index", index, "-q").exit_code == 1  # keeps its own
    result = invoke("index", corpus_dir / "notes", "--index", index, "--chunk-tokens", "128", "-q")
    assert result.exit_code == 2 and "128" in result.output, result.output


def test_eval_qa_completes_an_interrupted_index(tmp_path: Path) -> None:
    from searchkit import Index
    from searchkit.squad import load_squad, paragraph_documents

    paragraphs = [
        ("Alice was born in Lyon and later worked as a painter.", "Where was Alice born?", "Lyon"),
        ("Bruno was born in Porto and later worked as a baker.", "Where was Bruno born?", "Porto"),
        ("Chen was born in Dalian and later worked as a pilot.", "Where was Chen born?", "Dalian"),
    ]
    data = {"version": "1.1", "data": [{"title": "People", "paragraphs": [
        {"context": context, "qas": [{"id": f"q{i}", "question": question,
                                      "answers": [{"text": answer, "answer_start": context.index(answer)}]}]}
        for i, (context, question, answer) in enumerate(paragraphs)
    ]}]}
    squad = tmp_path / "people.json"
    squad.write_text(json.dumps(data))
    index = tmp_path / "idx"
    with Index.create(index) as partial:  # as if the first build was killed after one batch
        partial.add(paragraph_documents(load_squad(squad))[:1])
    result = invoke("eval-qa", squad, "--index", index, "-k", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["open_domain"]["retrieval_recall@1"] == 100.0
    assert json.loads(invoke("info", "-i", index, "--json").stdout)["counts"]["documents"] == 3

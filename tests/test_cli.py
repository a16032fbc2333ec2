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


def test_every_command_has_help_text() -> None:
    command = get_command(app)
    for name, sub in command.commands.items():
        assert sub.help, f"command {name} has no help"
        for param in sub.params:
            if param.name != "help":
                assert getattr(param, "help", None), f"{name} {param.name} has no help"
        assert invoke(name, "--help").exit_code == 0


def test_index_reports_added_and_skipped_with_location(corpus_dir: Path, tmp_path: Path) -> None:
    result = invoke("index", corpus_dir, "--index", tmp_path / "idx", "--quiet")
    assert result.exit_code == 1
    assert "4 added, 0 updated, 0 unchanged, 2 failed" in result.output
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
    assert re.search(r"^documents +4$", result.output, re.M) and re.search(r"^  dimension +384$", result.output, re.M)
    data = json.loads(invoke("info", "--index", cli_index, "--json").stdout)
    assert data["counts"] == {"documents": 4, "chunks": 4, "vectors": 4}
    assert data["metadata_fields"] == ["format", "topic", "year"]


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
    assert result.exit_code == 2 and "not a readable searchkit store" in result.output
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

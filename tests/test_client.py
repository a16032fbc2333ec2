"""searchkit.Client against a real server: the same methods and types as Index; `search --server`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from conftest import SMALL_CORPUS
from searchkit import Answer, Client, Document, FilterError, Hit, Index, IndexLockedError, Problem, QueryError, ServerError
from searchkit.cli import app
from searchkit.server import BackgroundServer, ServerSettings, create_app
from searchkit.state import IndexDirectory

KEY = "client-key"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Index]:
    opened = Index.create(tmp_path_factory.mktemp("client") / "index", model=embedder, lock_timeout=0.3)
    opened.add(SMALL_CORPUS)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def url(index: Index) -> Iterator[str]:
    with BackgroundServer(create_app(index, ServerSettings(allow_writes=True, api_key=KEY))) as server:
        yield server.url


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, api_key=KEY) as remote:
        yield remote


def test_search_gives_the_same_hits_as_the_index(client: Client, index: Index) -> None:
    for kwargs in ({}, {"mode": "hybrid", "fusion": "rrf"}, {"mode": "lexical"}, {"where": {"year": {"$gte": 2019}}},
                   {"where": ["topic in animals,cooking"]}):
        remote = client.search("pets that purr or bark", 4, **kwargs)
        local = index.search("pets that purr or bark", 4, **kwargs)
        assert all(isinstance(hit, Hit) for hit in remote)
        assert [h.doc_id for h in remote] == [h.doc_id for h in local]
        assert [h.score for h in remote] == pytest.approx([h.score for h in local], abs=1e-5)
        assert [(h.text, h.start, h.end, h.metadata) for h in remote] == [(h.text, h.start, h.end, h.metadata) for h in local]


def test_search_batch_and_ask(client: Client, index: Index) -> None:
    batches = client.search_batch(["coffee", "volcano"], k=2)
    assert [[h.doc_id for h in hits] for hits in batches] == [[h.doc_id for h in hits] for hits in index.search_batch(["coffee", "volcano"], k=2)]
    assert client.search_batch([]) == []
    answers = client.ask("what can parrots imitate?", k=1)
    assert isinstance(answers[0], Answer) and answers[0] == index.ask("what can parrots imitate?", k=1)[0]


def test_errors_come_back_as_the_library_exceptions(client: Client, url: str, index: Index) -> None:
    with pytest.raises(QueryError, match="empty"):
        client.search("  ")
    with pytest.raises(FilterError, match="unknown filter field 'colour'"):
        client.search("x", where={"colour": "red"})
    with pytest.raises(FilterError, match="wrap one condition in a list"):
        client.search("x", where="year>2000")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="k"):
        client.search("x", k=0)
    with pytest.raises(ServerError, match="API key") as refused:
        Client(url, api_key="").add([Document("a", "b")])
    assert refused.value.status == 401
    with IndexDirectory(index.path).write_lock(), pytest.raises(IndexLockedError, match="another process"):
        client.delete(["cat"])
    with pytest.raises(ServerError, match="cannot reach the searchkit server"):
        Client("http://127.0.0.1:9", timeout=2).search("x")


def test_add_get_list_delete(client: Client) -> None:
    documents = [Document(f"note/{i} #x?", f"Note {i} about lighthouses and foghorns.", f"Note {i}", {"n": i}) for i in range(5)]
    report = client.add([*documents, {"id": "", "text": "no id"}, Problem("feed.jsonl", "bad line", 3)], batch_size=2)
    assert (report.added, report.unchanged) == (5, 0)
    assert sorted(str(p) for p in report.failed) == ["documents[5] (id ''): document id is empty", "feed.jsonl:3: bad line"]
    stored = client.get("note/3 #x?")
    assert stored is not None and stored.text == "Note 3 about lighthouses and foghorns." and stored.metadata == {"n": 3}
    assert client.get("nope") is None
    page = client.documents(limit=2, where=["n>=1"])
    assert page.total == 4 and [d.doc_id for d in page.documents] == ["note/1 #x?", "note/2 #x?"]
    assert client.search("lighthouse foghorn", k=1, mode="lexical")[0].doc_id.startswith("note/")
    deleted = client.delete([d.id for d in documents] + ["never"])
    assert deleted.deleted == [d.id for d in documents] and deleted.not_found == ["never"]
    assert len(client) == len(SMALL_CORPUS)
    assert client.info()["counts"]["documents"] == len(SMALL_CORPUS)


def test_cli_search_and_ask_with_server(url: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["search", "animal that barks", "--server", url, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["doc_id"] == "dog"
    text = runner.invoke(app, ["search", "animal that barks", "--server", url, "--where", "legs=4"])
    assert text.exit_code == 0 and "dog" in text.output
    asked = runner.invoke(app, ["ask", "what can parrots imitate?", "--server", url, "-k", "1"])
    assert asked.exit_code == 0 and "parrot" in asked.output
    bad = runner.invoke(app, ["search", "x", "--server", url, "--where", "colour=red"])
    assert bad.exit_code == 2 and "unknown filter field 'colour'" in bad.output
    both = runner.invoke(app, ["search", "x"])
    assert both.exit_code == 2 and "--index DIR" in both.output and "--server URL" in both.output
    model = runner.invoke(app, ["search", "x", "--server", url, "--model", "other"])
    assert model.exit_code == 2 and "--model cannot be used with --server" in model.output


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Index]:
    """An index whose search settings (as `searchkit tune` writes them) are hybrid, rrf."""
    from searchkit.config import SearchConfig

    opened = Index.create(tmp_path_factory.mktemp("tuned") / "index", model=embedder)
    opened.add(SMALL_CORPUS)
    opened.configure_search(SearchConfig(mode="hybrid", fusion="rrf"))
    yield opened
    opened.close()


def test_a_search_that_names_no_mode_follows_the_index_settings_over_http(tuned: Index) -> None:
    """A tuned index must rank through the server, the client, `search --server` and the page as it does locally."""
    query = "pets that purr or bark"
    local = tuned.search(query, 5)
    dense = tuned.search(query, 5, mode="dense")
    assert [h.score for h in local] == pytest.approx([h.score for h in tuned.search(query, 5, mode="hybrid", fusion="rrf")])
    assert [h.score for h in local] != pytest.approx([h.score for h in dense], abs=1e-3)
    with BackgroundServer(create_app(tuned)) as server, Client(server.url) as remote:
        for hits in (remote.search(query, 5), remote.search_batch([query], 5)[0]):
            assert [(h.doc_id, round(h.score, 5)) for h in hits] == [(h.doc_id, round(h.score, 5)) for h in local]
        got = remote._http.get("/search", params={"q": query, "k": 5}).json()["hits"]
        assert [(h["doc_id"], round(h["score"], 5)) for h in got] == [(h.doc_id, round(h.score, 5)) for h in local]
        cli = CliRunner().invoke(app, ["search", query, "-k", "5", "--server", server.url, "--json"])
        assert cli.exit_code == 0, cli.output
        assert [(h["doc_id"], round(h["score"], 5)) for h in json.loads(cli.output)] == [
            (h.doc_id, round(h.score, 5)) for h in local
        ]

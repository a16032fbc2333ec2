"""searchkit serve: the REST API, called over HTTP on a real server (uvicorn on 127.0.0.1, a free port)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import SMALL_CORPUS
from searchkit import Document, Index
from searchkit.server import BackgroundServer, ServerSettings, create_app, snippet
from searchkit.state import IndexDirectory

KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Iterator[Index]:
    opened = Index.create(tmp_path_factory.mktemp("served") / "index", model=embedder, lock_timeout=0.5)
    opened.add(SMALL_CORPUS)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def api(index: Index) -> Iterator[httpx.Client]:
    """A server that allows writes with a key, small limits, and one allowed CORS origin."""
    settings = ServerSettings(
        allow_writes=True, api_key=KEY, max_k=50, max_body_bytes=64 * 1024, cors_origins=("http://intranet.test",)
    )
    with BackgroundServer(create_app(index, settings)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def readonly(index: Index) -> Iterator[httpx.Client]:
    """A server with the default settings: no writes, no CORS."""
    with BackgroundServer(create_app(index)) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


WRITE = {"Authorization": f"Bearer {KEY}"}


def ids(result: dict) -> list[str]:
    return [hit["doc_id"] for hit in result["hits"]]


def error(response: httpx.Response, status: int) -> str:
    """The message of a JSON error response, after checking its status and shape."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"detail", "error"} and body["detail"], body
    assert "Traceback" not in body["detail"]
    return body["detail"]


def test_search_returns_the_same_hits_as_the_library(api: httpx.Client, index: Index) -> None:
    result = api.get("/search", params={"q": "an animal that purrs and hunts mice", "k": 3}).json()
    local = index.search("an animal that purrs and hunts mice", k=3)
    assert ids(result) == [hit.doc_id for hit in local]
    assert ids(result)[0] == "cat"
    first = result["hits"][0]
    assert first["score"] == pytest.approx(local[0].score, abs=1e-5)
    for name in ("rank", "chunk_id", "title", "text", "start", "end", "metadata"):
        assert first[name] == getattr(local[0], name)
    assert result["took_ms"] >= 0


def test_snippets_mark_the_query_words(api: httpx.Client) -> None:
    hit = api.get("/search", params={"q": "coffee pressure", "mode": "lexical", "k": 1}).json()["hits"][0]
    assert hit["doc_id"] == "espresso"
    marked = [hit["snippet"][start:end] for start, end in hit["highlights"]]
    assert marked == ["coffee", "pressure"]


def test_snippet_window_finds_the_matches_in_a_long_text() -> None:
    text = "filler words here. " * 40 + "The tides follow the Moon. " + "more filler text. " * 40
    shown, marks = snippet(text, "what causes tides", width=120)
    assert shown.startswith("…") and shown.endswith("…") and len(shown) <= 122
    assert [shown[a:b] for a, b in marks] == ["tides"]
    assert snippet("Tide tables", "tides")[1] == [(0, 4)]


@pytest.mark.parametrize("mode", ["dense", "lexical", "hybrid"])
def test_every_mode_with_filters(api: httpx.Client, mode: str) -> None:
    cli_style = api.get("/search", params={"q": "programming language", "mode": mode, "where": ["topic=programming", "year>=2000"]})
    json_style = api.get("/search", params={"q": "programming language", "mode": mode, "where": '{"topic": "programming", "year": {"$gte": 2000}}'})
    body = api.post("/search", json={"query": "programming language", "mode": mode,
                                     "where": {"topic": "programming", "year": {"$gte": 2000}}})
    for response in (cli_style, json_style, body):
        assert response.status_code == 200, response.text
        assert ids(response.json()) == ["rust"]


def test_batch_search(api: httpx.Client, index: Index) -> None:
    response = api.post("/search", json={"queries": ["coffee", "volcano eruption"], "k": 2})
    results = response.json()["results"]
    assert [r["query"] for r in results] == ["coffee", "volcano eruption"]
    assert [ids(r) for r in results] == [[h.doc_id for h in hits] for hits in index.search_batch(["coffee", "volcano eruption"], 2)]


def test_group_by_document(tmp_path: Path, embedder: object) -> None:
    long_text = " ".join(f"Sentence {i} of the tea document talks about green tea leaves and brewing." for i in range(60))
    with Index.create(tmp_path / "long", model=embedder, chunking={"max_tokens": 32}) as index:
        index.add([Document("tea", long_text, "Tea"), Document("coffee", "Coffee is brewed from roasted beans.", "Coffee")])
        with BackgroundServer(create_app(index)) as server:
            flat = httpx.get(f"{server.url}/search", params={"q": "brewing green tea", "k": 3}).json()
            grouped = httpx.get(f"{server.url}/search", params={"q": "brewing green tea", "k": 2, "group": True}).json()
    assert ids(flat) == ["tea", "tea", "tea"]
    assert ids(grouped) == ["tea", "coffee"]
    assert [h["rank"] for h in grouped["hits"]] == [1, 2]
    assert [g["doc_id"] for g in grouped["groups"]] == ["tea", "coffee"]
    assert len(grouped["groups"][0]["hits"]) > 1
    assert {h["doc_id"] for h in grouped["groups"][0]["hits"]} == {"tea"}


def test_ask_returns_located_answers(api: httpx.Client, index: Index) -> None:
    response = api.post("/ask", json={"question": "what can parrots imitate?", "k": 2})
    answers = response.json()["answers"]
    assert answers[0]["doc_id"] == "parrot"
    document = index.get("parrot")
    assert document is not None and document.text[answers[0]["start"]:answers[0]["end"]] == answers[0]["answer"]
    assert "«" in answers[0]["context"]


def test_rerank_qa(api: httpx.Client) -> None:
    response = api.get("/search", params={"q": "what do plants turn sunlight into?", "rerank": "qa", "k": 2})
    assert ids(response.json())[0] == "photosynthesis"


@pytest.mark.parametrize(
    ("request_args", "status", "words"),
    [
        ({"method": "GET", "url": "/search", "params": {"q": "   "}}, 400, "query is empty"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "k": 0}}, 422, "k"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "k": 51}}, 422, "at most 50"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "mode": "semantic"}}, 422, "mode"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "where": "colour=red"}}, 400, "unknown filter field 'colour'"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "where": "year=>2020"}}, 400, "did you mean '>='"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "where": "{not json"}}, 400, "not valid JSON"),
        ({"method": "GET", "url": "/search", "params": {"q": "x", "where": "year>'2020'"}}, 400, "holds numbers"),
        ({"method": "GET", "url": "/search", "params": {"q": "x" * 5000}}, 422, "q"),
        ({"method": "GET", "url": "/search"}, 422, "q: required"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "where": {"year": {"$regex": "1"}}}}, 400, "unknown operator"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "where": "year>1"}}, 422, "where"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "queries": ["y"]}}, 422, "not both"),
        ({"method": "POST", "url": "/search", "json": {"k": 3}}, 422, "either 'query'"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "colour": 1}}, 422, "colour: unknown field"),
        ({"method": "POST", "url": "/search", "json": {"query": 5}}, 422, "query"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "rerank": "bm25"}}, 422, "rerank"),
        ({"method": "POST", "url": "/search", "json": {"query": "x", "hybrid_weight": 2}}, 422, "hybrid_weight"),
        ({"method": "POST", "url": "/search", "json": {"queries": ["x"] * 65}}, 422, "queries"),
        ({"method": "POST", "url": "/search", "content": b"{oops", "headers": {"content-type": "application/json"}}, 422, "not valid JSON"),
        ({"method": "POST", "url": "/search", "json": ["a list"]}, 422, "valid dictionary"),
        ({"method": "POST", "url": "/ask", "json": {"question": ""}}, 400, "query is empty"),
        ({"method": "POST", "url": "/ask", "json": {"question": "why?", "candidates": 500}}, 422, "candidates"),
        ({"method": "GET", "url": "/documents/no-such-doc"}, 404, "no document with id 'no-such-doc'"),
        ({"method": "GET", "url": "/documents", "params": {"limit": 0}}, 422, "limit"),
        ({"method": "GET", "url": "/documents", "params": {"where": "nofield=1"}}, 400, "unknown filter field"),
        ({"method": "GET", "url": "/no/such/endpoint"}, 404, "/docs"),
        ({"method": "PUT", "url": "/search"}, 405, "PUT /search"),
    ],
)
def test_client_errors_are_json_4xx_with_a_message(api: httpx.Client, request_args: dict, status: int, words: str) -> None:
    assert words in error(api.request(**request_args), status)


def test_lone_surrogates_never_cause_a_500(api: httpx.Client) -> None:
    body = b'{"query": "tea \\ud800 leaves"}'
    response = api.post("/search", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (200, 400), response.text
    added = api.post("/documents", content=b'{"documents": [{"id": "bad\\udfff", "text": "x"}]}',
                     headers={"content-type": "application/json", **WRITE})
    assert added.status_code == 200 and "not valid Unicode" in added.json()["failed"][0]["reason"]


def test_body_over_the_limit_is_413(api: httpx.Client) -> None:
    big = {"documents": [{"id": "big", "text": "word " * 20_000}]}
    assert "limit of 65,536 bytes" in error(api.post("/documents", json=big, headers=WRITE), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds for a streamed body too
        yield b'{"query": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}'

    streamed = api.post("/search", content=chunks(), headers={"content-type": "application/json"})
    error(streamed, 413)


def test_documents_get_and_list(api: httpx.Client) -> None:
    document = api.get("/documents/cat").json()
    assert document["text"].startswith("Cats are small") and document["metadata"]["legs"] == 4 and document["chunks"] == 1
    page = api.get("/documents", params={"limit": 2, "offset": 1, "where": "topic=cooking"}).json()
    assert page["total"] == 2 and [d["doc_id"] for d in page["documents"]] == ["espresso"]
    assert page["documents"][0]["text"] is None


def test_writes_need_the_key_and_take_effect(api: httpx.Client) -> None:
    new = {"documents": [{"id": "notes/tides.md", "text": "Tides rise and fall twice a day because of the Moon.",
                          "title": "Tides", "topic": "astronomy", "year": 2024}]}
    assert "API key" in error(api.post("/documents", json=new), 401)
    assert "API key" in error(api.post("/documents", json=new, headers={"Authorization": "Bearer wrong"}), 401)
    report = api.post("/documents", json=new, headers={"X-API-Key": KEY}).json()
    assert report["added"] == 1 and report["failed"] == []
    assert ids(api.get("/search", params={"q": "why the sea rises twice daily", "k": 1}).json()) == ["notes/tides.md"]
    assert api.get("/documents/notes/tides.md").json()["title"] == "Tides"
    again = api.post("/documents", json=new, headers=WRITE).json()
    assert again["unchanged"] == 1
    assert error(api.delete("/documents/notes/tides.md"), 401)
    assert api.delete("/documents/notes/tides.md", headers=WRITE).json() == {
        "deleted": ["notes/tides.md"], "not_found": [], "chunks_removed": 1}
    error(api.delete("/documents/notes/tides.md", headers=WRITE), 404)
    assert api.post("/documents/delete", json={"ids": ["nope"]}, headers=WRITE).json()["not_found"] == ["nope"]


def test_per_record_problems_are_reported_like_the_cli(api: httpx.Client) -> None:
    records = [{"id": "ok-1", "text": "A fine record about sailing boats."}, {"id": "", "text": "no id"}, 7,
               {"id": "x", "text": "   "}, {"id": "m", "text": "t", "metadata": {"nested": {"a": 1}}}]
    report = api.post("/documents", json={"documents": records}, headers=WRITE).json()
    assert report["added"] == 1
    reasons = {problem["where"].split(" ")[0]: problem["reason"] for problem in report["failed"]}
    assert set(reasons) == {"documents[1]", "documents[2]", "documents[3]", "documents[4]"}
    assert "id is empty" in reasons["documents[1]"] and "text is empty" in reasons["documents[3]"]
    assert "nested" in reasons["documents[4]"]
    api.post("/documents/delete", json={"ids": ["ok-1"]}, headers=WRITE)


def test_writes_are_off_by_default(readonly: httpx.Client) -> None:
    assert readonly.get("/health").json()["writes"] is False
    message = error(readonly.post("/documents", json={"documents": []}, headers=WRITE), 403)
    assert "--allow-writes" in message
    error(readonly.delete("/documents/cat", headers=WRITE), 403)
    assert readonly.get("/documents/cat").status_code == 200


def test_cors_is_closed_unless_an_origin_is_given(api: httpx.Client, readonly: httpx.Client) -> None:
    preflight = {"Origin": "http://intranet.test", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in readonly.options("/search", headers=preflight).headers
    assert "access-control-allow-origin" not in readonly.get("/health", headers={"Origin": "http://evil.test"}).headers
    assert api.options("/search", headers=preflight).headers["access-control-allow-origin"] == "http://intranet.test"
    other = api.get("/health", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in other.headers


def test_a_write_waits_for_another_writer_then_fails_with_423(api: httpx.Client, index: Index) -> None:
    """The index's file lock, held as another process's ingest would hold it, makes API writes wait, then refuse."""
    directory = IndexDirectory(index.path)
    with directory.write_lock():
        response = api.post("/documents", json={"documents": [{"id": "late", "text": "late arrival"}]}, headers=WRITE)
    assert "another process is writing" in error(response, 423)
    assert response.headers["retry-after"] == "1"
    assert api.get("/documents/late").status_code == 404
    assert ids(api.get("/search", params={"q": "cats", "k": 1}).json()) == ["cat"]  # reads never wait


def test_writes_by_another_process_are_searched_without_a_restart(api: httpx.Client, index: Index, embedder: object) -> None:
    """A second Index on the same folder stands for `searchkit index` run in another process."""
    with Index.open(index.path, model=embedder) as other:
        other.add([Document("glacier", "Glaciers are slow rivers of ice that carve valleys.", "Glaciers", {"topic": "geology"})])
        assert ids(api.get("/search", params={"q": "rivers of ice", "k": 1}).json()) == ["glacier"]
        assert api.get("/health").json()["documents"] == len(SMALL_CORPUS) + 1
        other.delete(["glacier"])
    assert "glacier" not in ids(api.get("/search", params={"q": "rivers of ice", "k": 3}).json())


def test_concurrent_searches_and_a_writer(api: httpx.Client) -> None:
    """Bounded: 8 threads, 10 searches each of mixed modes, while documents are added and removed."""
    queries = [("animal that barks", "dog"), ("coffee brewing", "espresso"), ("stars and gravity", "black-hole")]
    failures: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            doc = {"id": f"extra-{n % 3}", "text": f"Filler note number {n} about gardening and tomatoes."}
            response = api.post("/documents", json={"documents": [doc]}, headers=WRITE)
            if response.status_code != 200:
                failures.append(response.text)
            n += 1

    def searcher(worker: int) -> None:
        for i in range(10):
            query, expected = queries[(worker + i) % len(queries)]
            mode = ("dense", "hybrid", "lexical")[i % 3]
            params = {"q": query, "k": 3, "mode": mode} | ({"where": "year>=1900"} if i % 2 else {})
            response = api.get("/search", params=params)
            if response.status_code != 200 or expected not in ids(response.json()):
                failures.append(f"{params}: {response.status_code} {response.text[:200]}")

    writing = threading.Thread(target=writer)
    writing.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(searcher, range(8)))
    finally:
        stop.set()
        writing.join()
    api.post("/documents/delete", json={"ids": ["extra-0", "extra-1", "extra-2"]}, headers=WRITE)
    assert failures == []


def test_health_info_openapi_and_page(api: httpx.Client) -> None:
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["documents"] >= len(SMALL_CORPUS)
    info = api.get("/info").json()
    assert info["metadata_fields"]["year"] == ["number"] and info["server"]["max_k"] == 50
    schema = api.get("/openapi.json").json()
    assert {"/search", "/ask", "/documents", "/documents/{doc_id}", "/info", "/health"} <= set(schema["paths"])
    docs = api.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()  # offline: every asset comes from this server
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text):
        assert api.get(asset).status_code == 200, asset
    assert "SwaggerUIBundle" in api.get("/static-docs/swagger-ui-bundle.js").text
    page = api.get("/")
    assert page.status_code == 200 and "<form" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "default-src 'none'" in api.get("/static/app.js").headers["content-security-policy"]


def test_searchkit_serve_in_its_own_process(index: Index, embedder: object, tmp_path: Path) -> None:
    """The real command: it starts, answers, sees a document this (other) process adds, and stops on Ctrl-C."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "searchkit.cli", "serve", "--index", str(index.path), "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "searchkit serve did not start within 90 s"
                time.sleep(0.2)
        http = httpx.Client(base_url=url, timeout=60)
        assert ids(http.get("/search", params={"q": "animal that barks", "k": 1}).json()) == ["dog"]
        assert "--allow-writes" in error(http.post("/documents", json={"documents": []}), 403)
        with Index.open(index.path, model=embedder) as writer:
            writer.add([Document("comet", "Comets are icy bodies that grow glowing tails near the Sun.", "Comets")])
            try:
                assert ids(http.get("/search", params={"q": "icy bodies with glowing tails", "k": 1}).json()) == ["comet"]
            finally:
                writer.delete(["comet"])
        http.close()
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0].decode()
    assert server.returncode == 0, output
    assert f"on http://127.0.0.1:{port} (writes off)" in output

"""Checks on a real three-node Ray cluster; run by tests/test_distributed.py inside a private network namespace.

Not collected on its own (the name does not start with ``test_``): Ray registers its nodes
under the machine's network address unless the only interface is loopback, so the
runner re-executes pytest on this file under ``unshare -rn`` (only 127.0.0.1 exists,
nothing leaves the machine). One cluster serves the whole module; checks run in file
order: one takes a shard down, and the last deploys the shards again from the command line.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from searchkit import CachedEmbedder, Client, FilterError, Index, ServerError, ShardUnavailableError, load_beir  # noqa: E402
from searchkit.cli import app  # noqa: E402
from searchkit.distributed.router import ShardedIndex  # noqa: E402
from searchkit.distributed.serving import open_on_ray  # noqa: E402
from searchkit.distributed.sharding import shard_index  # noqa: E402
from searchkit.evaluation import evaluate_index  # noqa: E402
from searchkit.retrieval import Mode  # noqa: E402
from searchkit.server import BackgroundServer, create_app  # noqa: E402
from searchkit.sources import Sources  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

DEMO = REPO_ROOT / "corpora" / "demo"
INGEST_DOCUMENTS = 24


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    """A head and two workers of one CPU each, all on 127.0.0.1."""
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes.add_node(num_cpus=1)
    nodes.add_node(num_cpus=1)
    ray.init(address=nodes.address, log_to_driver=False)
    nodes.wait_for_nodes()
    yield nodes
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    nodes.shutdown()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, embedder) -> Index:
    """The demo corpus indexed locally (the embedding cache spares a second embedding of it)."""
    index = Index.create(tmp_path_factory.mktemp("demo") / "index", model=CachedEmbedder(embedder))
    index.add(Sources([DEMO / "corpus.jsonl"]))
    yield index
    index.close()


@pytest.fixture(scope="module")
def served(cluster: Cluster, demo: Index, tmp_path_factory: pytest.TempPathFactory, embedder) -> ShardedIndex:
    """The demo index in two shards, each a Ray Serve deployment of two replicas."""
    shards = tmp_path_factory.mktemp("shards") / "demo"
    shard_index(demo.path, 2, shards, model=embedder)
    sharded = open_on_ray(shards, replicas=2, address=cluster.address, model=embedder, replica_cpus=0, timeout=20)
    yield sharded


@pytest.fixture(scope="module")
def client(served: ShardedIndex) -> Client:
    with BackgroundServer(create_app(served)) as server, Client(server.url) as http:
        yield http


def test_every_node_is_on_loopback(cluster: Cluster) -> None:
    nodes = [node for node in ray.nodes() if node["Alive"]]
    assert len(nodes) == 3 and {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}


def test_distributed_ingest_matches_local(cluster: Cluster, tmp_path: Path, embedder) -> None:
    lines = (DEMO / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:INGEST_DOCUMENTS]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runner = CliRunner()
    local = runner.invoke(app, ["index", str(corpus), "--index", str(tmp_path / "local"), "--json"])
    assert local.exit_code == 0, local.output
    options = ["--ray", cluster.address, "--ray-actors", "2", "--ray-batch-size", "8", "--json"]
    distributed = runner.invoke(app, ["index", str(corpus), "--index", str(tmp_path / "ray"), *options])
    assert distributed.exit_code == 0, distributed.output
    report = json.loads(distributed.output)
    assert report["added"] == INGEST_DOCUMENTS and report["chunks_added"] == json.loads(local.output)["chunks_added"]
    with Index.open(tmp_path / "local", model=embedder) as one, Index.open(tmp_path / "ray", model=embedder) as other:
        assert one.config == other.config
        want, got = _contents(one), _contents(other)
        assert [key for key, _ in want] == [key for key, _ in got]  # the same documents, chunks, offsets and texts
        vectors = np.stack([v for _, v in want]), np.stack([v for _, v in got])
        assert np.allclose(*vectors, atol=2e-3) and np.min(np.sum(vectors[0] * vectors[1], axis=1)) > 0.9999
        # bf16 sums depend on how texts are batched (the cluster's batches of 8 against local groups of 64), so
        # hits may swap only where their scores tie within the vectors' tolerance.
        mine, theirs = one.search("the largest planet", 3), other.search("the largest planet", 3)
        assert mine[0].doc_id == theirs[0].doc_id
        assert np.allclose([h.score for h in mine], [h.score for h in theirs], atol=2e-3)
    again = runner.invoke(app, ["index", str(corpus), "--index", str(tmp_path / "ray"), *options])
    assert again.exit_code == 0 and json.loads(again.output)["unchanged"] == INGEST_DOCUMENTS  # a re-run embeds nothing


def _contents(index: Index) -> list[tuple[tuple, np.ndarray]]:
    """((doc id, title, metadata, chunk start, end, text), vector) of every chunk, in document and offset order."""
    ids = np.concatenate([ids for ids, _ in index.store.embeddings(index.config.model.dimension)])
    vectors = np.concatenate([v for _, v in index.store.embeddings(index.config.model.dimension)])
    rows = index.store.chunk_rows(ids.tolist())
    keyed = [((r.doc_id, r.title, json.dumps(r.metadata, sort_keys=True), r.start, r.end, r.text), v)
             for r, v in zip((rows[int(i)] for i in ids), vectors)]
    return sorted(keyed, key=lambda item: item[0][:1] + item[0][3:5])


def test_sharded_dense_search_is_exactly_the_unsharded_one(client: Client, demo: Index) -> None:
    queries = list(load_beir(DEMO).queries.values())
    assert len(queries) == 40
    expected = demo.search_batch(queries, 10, mode="dense")
    found = client.search_batch(queries, 10, mode="dense")
    for query, want, got in zip(queries, expected, found):
        assert [h.doc_id for h in got] == [h.doc_id for h in want], query
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-5), query


def test_sharded_lexical_and_hybrid_quality_match_unsharded(served: ShardedIndex, demo: Index) -> None:
    dataset = load_beir(DEMO)
    for mode in (Mode.LEXICAL, Mode.HYBRID):
        one = evaluate_index(demo, dataset, [10], mode=mode, name="one").evaluation.mean["ndcg@10"]
        many = evaluate_index(served, dataset, [10], mode=mode, name="sharded").evaluation.mean["ndcg@10"]
        assert abs(one - many) <= 0.005, (mode, one, many)


def test_filters_and_documents_through_the_sharded_server(client: Client, demo: Index) -> None:
    where = ["topic=astronomy"] if "topic" in demo.store.field_types() else None
    assert where, demo.store.field_types()
    want = demo.search("telescopes in space", 10, where=where)
    got = client.search("telescopes in space", 10, where=where)
    assert [h.doc_id for h in got] == [h.doc_id for h in want] and len(got) == 10
    assert client.documents(0, 7).total == len(demo) and client.get("as-001").title == demo.get("as-001").title
    with pytest.raises(FilterError, match="topik"):  # checked by the router, as the unsharded server checks it
        client.search("telescopes", 3, where=["topik=astronomy"])


def test_killing_a_replica_loses_no_request(client: Client, served: ShardedIndex, demo: Index) -> None:
    query = "what is a supernova"
    expected = [h.doc_id for h in demo.search(query, 5)]
    results: list[list[str]] = []
    errors: list[str] = []
    stop = time.monotonic() + 6.0

    def load() -> None:
        while time.monotonic() < stop:
            try:
                results.append([h.doc_id for h in client.search(query, 5)])
            except Exception as exc:  # every failure is counted, none may happen
                errors.append(repr(exc))

    workers = [threading.Thread(target=load) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    replicas = [actor for actor in ray.util.list_named_actors(all_namespaces=True) if "shard-00#" in actor["name"]]
    assert len(replicas) == 2, replicas
    ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=True)
    for worker in workers:
        worker.join()
    assert errors == [] and len(results) > 20 and all(result == expected for result in results)


def test_a_shard_that_is_down_is_an_error_naming_it(client: Client) -> None:
    from ray import serve

    serve.delete("searchkit-shard-01")
    with pytest.raises(ShardUnavailableError) as down:  # the server's 503, raised by the Client as the library's error
        client.search("what is a supernova", 5)
    assert "shard 1" in str(down.value) and "searchkit-shard-01" in str(down.value)


def test_searchkit_serve_shards_on_ray_in_its_own_process(cluster: Cluster, served: ShardedIndex, demo: Index) -> None:
    """The real command joins the cluster, deploys the shards again (the one taken down included) and answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "searchkit.cli", "serve", "--shards", str(served.path), "--ray", cluster.address,
               "--replicas", "2", "--replica-cpus", "0", "--port", str(port), "--no-access-log"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 150
        with Client(f"http://127.0.0.1:{port}", timeout=30) as http:
            while True:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                try:
                    http.health()
                    break
                except ServerError:
                    assert time.monotonic() < deadline, "searchkit serve --shards --ray did not start within 150 s"
                    time.sleep(0.5)
            query = "what is a supernova"
            assert [h.doc_id for h in http.search(query, 5)] == [h.doc_id for h in demo.search(query, 5)]
            assert [s["counts"]["documents"] for s in http.info()["shards"]] == [
                s["counts"]["documents"] for s in served.info()["shards"]
            ]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)

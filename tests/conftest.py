"""Shared fixtures: the real bundled model, loaded once, and small indexes built with it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests never read or fill the user's embedding cache. A test run started by a test (the Ray checks
# in a network namespace) shares its parent's, so what the suite embedded is not embedded again.
if not (os.environ.get("SEARCHKIT_KEEP_CACHE_DIR") and os.environ.get("SEARCHKIT_CACHE_DIR")):
    os.environ["SEARCHKIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="searchkit-test-cache-")

from searchkit import Document, Index, SentenceTransformerEmbedder, load_embedder  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASETS = REPO_ROOT.parent / "shared" / "datasets"

ANIMALS = [
    Document("cat", "Cats are small domesticated felines that purr, groom themselves and hunt mice.",
             "Cats", {"topic": "animals", "year": 2019, "legs": 4}),
    Document("dog", "Dogs are loyal companions descended from wolves; they bark and love to fetch sticks.",
             "Dogs", {"topic": "animals", "year": 2020, "legs": 4}),
    Document("parrot", "Parrots are colourful tropical birds that can imitate human speech.",
             "Parrots", {"topic": "animals", "year": 2021, "legs": 2}),
]
SCIENCE = [
    Document("photosynthesis", "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar and oxygen.",
             "Photosynthesis", {"topic": "biology", "year": 2015}),
    Document("black-hole", "A black hole is a region of spacetime where gravity is so strong that not even light escapes.",
             "Black holes", {"topic": "astronomy", "year": 2022}),
    Document("volcano", "Volcanoes erupt molten rock, ash and gases from magma chambers beneath the Earth's crust.",
             "Volcanoes", {"topic": "geology", "year": 2018}),
]
TECH = [
    Document("rust", "Rust is a systems programming language that guarantees memory safety without a garbage collector.",
             "Rust", {"topic": "programming", "year": 2015}),
    Document("sql", "SQL is the language for querying relational databases with SELECT, JOIN and WHERE clauses.",
             "SQL", {"topic": "programming", "year": 1986}),
    Document("bread", "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in a fermented starter.",
             "Sourdough", {"topic": "cooking", "year": 2020}),
    Document("espresso", "Espresso is brewed by forcing hot water through finely ground coffee at high pressure.",
             "Espresso", {"topic": "cooking", "year": 2021}),
]
SMALL_CORPUS = ANIMALS + SCIENCE + TECH


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return load_embedder()


@pytest.fixture
def make_index(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Callable[..., Index]:
    """Build an index in a fresh directory, optionally filled with documents."""
    opened: list[Index] = []

    def build(documents: list[Document] | None = None, name: str = "index", **create: object) -> Index:
        index = Index.create(tmp_path / name, model=embedder, **create)
        if documents:
            index.add(documents)
        opened.append(index)
        return index

    yield build
    for index in opened:
        index.close()


@pytest.fixture
def small_index(make_index: Callable[..., Index]) -> Index:
    return make_index(SMALL_CORPUS)


def squad_question(qid: str, question: str, context: str, answer: str) -> dict:
    """One SQuAD v1.1 question entry whose answer is found in ``context``."""
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": context.index(answer)}]}

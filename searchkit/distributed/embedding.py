"""Embedding on a Ray cluster: an :class:`~searchkit.embedding.Embedder` whose ``encode`` runs on Ray Data.

Reading, diffing, chunking and the single writer stay in the process that runs the
ingest; only the expensive step leaves it. Each batch of chunks the
:class:`~searchkit.ingest.Ingestor` hands over becomes a Ray Data ``map_batches`` over a
pool of embedding actors (one model each, one GPU each where the cluster has GPUs), and
the vectors come back in order to be committed exactly as a local ingest commits them, so
a killed run leaves the index as a killed local run does and a re-run resumes. Ray
retries a task whose worker dies.

Every actor checks that its model has the weights the index was built with, so a worker
with another model installed fails loudly instead of mixing vector spaces.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from searchkit.config import ModelIdentity
from searchkit.embedding import SentenceTransformerEmbedder, encode_queries
from searchkit.errors import ConfigError, ModelMismatchError, SearchkitError
from searchkit.distributed.runtime import require_ray

__all__ = ["RayEmbedder", "EmbeddingActor", "RayTimings", "ray_embedder"]

# Chunks sent to the cluster per ingest step: one Ray Data run each, so its fixed cost (starting
# the actors, loading the model) is spread over many chunks.
RAY_ENCODE_GROUP = 4096


class EmbeddingActor:
    """One embedding model on a Ray worker: ``{"position", "text"}`` batches in, ``{"position", "vector"}`` out."""

    def __init__(self, model: str, precision: str, weights_sha256: str, device: str, threads: int) -> None:
        import torch

        from searchkit.embedding import load_embedder

        torch.set_num_threads(threads)  # the CPUs Ray gave this actor, not every core of the node

        self.embedder = load_embedder(model, device=device, precision=precision, passages=precision)
        found = self.embedder.identity.weights_sha256
        if found != weights_sha256:
            raise ModelMismatchError(
                f"the Ray worker's model {model!r} has weights {found[:12]}, the index needs {weights_sha256[:12]}; "
                "install the same model on every node"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.embedder.encode([str(text) for text in batch["text"]], batch_size=len(batch["text"]))
        return {"position": batch["position"], "vector": vectors}


def quiet_ray_data(ray: Any) -> None:
    """No progress bars or per-run banners from Ray Data: the ingest's own bar says how far it is."""
    import logging

    context = ray.data.DataContext.get_current()  # imported first: importing Ray Data sets its loggers' levels
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@dataclass
class RayTimings:
    """Where the time of each call to the cluster went: all of it, and the part the actors spent embedding."""

    calls: int = 0
    texts: int = 0
    seconds: list[float] = field(default_factory=list)


class RayEmbedder:
    """Embeds passages on a Ray cluster with a pool of ``actors`` models; everything else is ``local``'s.

    ``local`` gives the identity (recorded in the manifest), the tokenizer (chunking stays
    here) and the query encoder. ``batch_size`` is the texts per ``map_batches`` batch;
    ``gpus`` the GPUs each actor holds (0: CPU actors, ``cpus`` cores each).
    """

    encode_group = RAY_ENCODE_GROUP

    def __init__(
        self,
        local: SentenceTransformerEmbedder,
        *,
        actors: int = 1,
        batch_size: int = 64,
        gpus: float = 0,
        cpus: float = 1,
    ) -> None:
        if actors < 1 or batch_size < 1:
            raise ConfigError(f"the Ray embedder needs at least one actor and one text per batch, got {actors} and {batch_size}")
        self.local = local
        self.actors = actors
        self.batch_size = batch_size
        self.gpus = gpus
        self.cpus = cpus
        self.timings = RayTimings()

    @property
    def identity(self) -> ModelIdentity:
        return self.local.identity

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return self.local.token_offsets(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return encode_queries(self.local, texts)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        """Unit-length vectors of ``texts``, embedded by the actor pool, in the order given."""
        dimension = self.identity.dimension
        if not texts:
            return np.zeros((0, dimension), dtype=np.float32)
        ray = require_ray()
        started = time.perf_counter()
        identity = self.identity
        quiet_ray_data(ray)
        blocks = max(1, -(-len(texts) // self.batch_size))
        dataset = ray.data.from_items(
            [{"position": i, "text": text} for i, text in enumerate(texts)], override_num_blocks=blocks
        )
        embedded = dataset.map_batches(
            EmbeddingActor,
            fn_constructor_kwargs={
                "model": self.local.model_spec, "precision": identity.precision,
                "weights_sha256": identity.weights_sha256, "device": "cuda" if self.gpus else "cpu",
                "threads": max(1, int(self.cpus)),
            },
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.actors),
            num_gpus=self.gpus or None,
            num_cpus=self.cpus,
        )
        vectors = np.zeros((len(texts), dimension), dtype=np.float32)
        filled = np.zeros(len(texts), dtype=bool)
        for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
            positions = np.asarray(batch["position"], dtype=np.int64)
            vectors[positions] = np.asarray(batch["vector"], dtype=np.float32).reshape(len(positions), dimension)
            filled[positions] = True
        if not filled.all():  # never commit zero vectors for texts the cluster did not answer
            raise SearchkitError(f"the Ray cluster returned vectors for {int(filled.sum())} of {len(texts)} texts; run the ingest again")
        self.timings.calls += 1
        self.timings.texts += len(texts)
        self.timings.seconds.append(time.perf_counter() - started)
        return vectors


def ray_embedder(
    local: SentenceTransformerEmbedder, *, actors: int | None = None, batch_size: int = 64, gpus: float | None = None
) -> RayEmbedder:
    """A :class:`RayEmbedder` sized to the connected cluster: one actor per GPU, else one per two CPUs.

    ``actors`` and ``gpus`` (per actor) override the sizing.
    """
    if not isinstance(local, SentenceTransformerEmbedder):
        raise ConfigError(f"embedding on Ray needs a sentence-transformers model, which the workers load; got {type(local).__name__}")
    ray = require_ray()
    resources = ray.cluster_resources()
    cluster_gpus = int(resources.get("GPU", 0))
    if gpus is None:
        gpus = 1 if cluster_gpus else 0
    if actors is None:
        actors = max(1, int(cluster_gpus / gpus) if gpus else int(resources.get("CPU", 1)) // 2)
    return RayEmbedder(local, actors=actors, batch_size=batch_size, gpus=gpus)

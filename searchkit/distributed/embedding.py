"""Embedding on a Ray cluster: an :class:`~searchkit.embedding.Embedder` whose ``encode`` runs on Ray Data.

Reading, diffing, chunking and the single writer stay in the process that runs the
ingest; only the expensive step leaves it. Each batch of chunks the
:class:`~searchkit.ingest.Ingestor` hands over becomes a Ray Data ``map_batches`` over a
pool of at most ``actors`` embedding workers (one GPU each where the cluster has GPUs),
and the vectors come back in order to be committed exactly as a local ingest commits
them, so a killed run leaves the index as a killed local run does and a re-run resumes.
Ray retries a task whose worker dies.

The pool is of tasks whose worker processes keep their model loaded, not of Ray Data
actors: Ray Data starts a new actor pool for every run, and an ingest is one run per
committed batch. Measured here, an actor pool cost 6.4 s per run (process start, model
load); reused task workers cost about 0.1 s (``benchmarks/ray_scale.py``).

Every worker checks that its model has the weights the index was built with, so a worker
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

__all__ = ["RayEmbedder", "RayTimings", "embed_batch", "ray_embedder"]

# Chunks sent to the cluster per ingest step at most: one Ray Data run each (an ingest batch
# usually holds fewer, about 500: see searchkit.ingest.BATCH_CHARS).
RAY_ENCODE_GROUP = 4096


# Models loaded in this worker process, by (model, precision, device): a Ray worker runs many
# Ray Data tasks of one ingest (and of the next), and loads each model once.
_WORKER_MODELS: dict[tuple[str, str, str], Any] = {}


def embed_batch(
    batch: dict[str, np.ndarray], model: str, precision: str, weights_sha256: str, device: str, threads: int
) -> dict[str, np.ndarray]:
    """One Ray Data batch, ``{"position", "text"}`` in, ``{"position", "vector"}`` out, on this worker's model."""
    key = (model, precision, device)
    embedder = _WORKER_MODELS.get(key)
    if embedder is None:
        import torch

        from searchkit.embedding import load_embedder

        torch.set_num_threads(threads)  # the CPUs Ray gave this task, not every core of the node
        embedder = load_embedder(model, device=device, precision=precision, passages=precision)
        found = embedder.identity.weights_sha256
        if found != weights_sha256:
            raise ModelMismatchError(
                f"the Ray worker's model {model!r} has weights {found[:12]}, the index needs {weights_sha256[:12]}; "
                "install the same model on every node"
            )
        _WORKER_MODELS[key] = embedder
    texts = [str(text) for text in batch["text"]]
    return {"position": batch["position"], "vector": embedder.encode(texts, batch_size=len(texts))}


def quiet_ray_data(ray: Any) -> None:
    """No progress bars or per-run banners from Ray Data: the ingest's own bar says how far it is."""
    import logging

    context = ray.data.DataContext.get_current()  # imported first: importing Ray Data sets its loggers' levels
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@dataclass
class RayTimings:
    """Where the time of each call to the cluster went: all of it, and and the texts sent."""

    calls: int = 0
    texts: int = 0
    seconds: list[float] = field(default_factory=list)


class RayEmbedder:
    """Embeds passages on a Ray cluster with at most ``actors`` models at once; everything else is ``local``'s.

    ``local`` gives the identity (recorded in the manifest), the tokenizer (chunking stays
    here) and the query encoder. ``batch_size`` is the texts per ``map_batches`` batch;
    ``gpus`` the GPUs each worker holds (0: CPU workers, ``cpus`` cores each).
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
            raise ConfigError(f"the Ray embedder needs at least one worker and one text per batch, got {actors} and {batch_size}")
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
        """Unit-length vectors of ``texts``, embedded on the cluster, in the order given."""
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
            embed_batch,
            fn_kwargs={
                "model": self.local.model_spec, "precision": identity.precision,
                "weights_sha256": identity.weights_sha256, "device": "cuda" if self.gpus else "cpu",
                "threads": max(1, int(self.cpus)),
            },
            batch_size=self.batch_size,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=self.actors),
            num_gpus=self.gpus or None,
            num_cpus=self.cpus,
            max_calls=0,  # keep workers (and their loaded model) between tasks, GPU ones too
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
    """A :class:`RayEmbedder` sized to the connected cluster: one embedding worker per GPU, else one per two CPUs.

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

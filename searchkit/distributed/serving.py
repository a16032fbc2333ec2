"""Shards served by Ray Serve: one application per shard, each a deployment of R replicas.

Every replica opens its shard's folder (so the folders must be on storage every node
sees: a shared file system, or copied to each node at the same path) and answers the
router's calls through Serve's deployment handles; no shard listens on HTTP. The router,
a :class:`~searchkit.distributed.router.ShardedIndex` behind ``searchkit serve``'s app,
runs in the process that deploys them.

A call that reaches a replica which then dies is sent again (Serve routes it to a
replica that is alive, and starts a new one in the background), so losing a replica
loses no request while another is up. A shard that does not answer within the timeout,
or whose application is gone, is a :class:`~searchkit.errors.ShardUnavailableError` that
names it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from searchkit.errors import SearchkitError, ShardUnavailableError
from searchkit.state import read_manifest
from searchkit.distributed.router import ShardedIndex, ShardSearcher, query_embedder
from searchkit.distributed.runtime import connect
from searchkit.distributed.sharding import ShardLayout

__all__ = ["RayShard", "deploy_shards", "open_on_ray", "APP_PREFIX", "SHARD_TIMEOUT"]

APP_PREFIX = "searchkit"
# Seconds a shard has to answer one call before the search fails with its name.
SHARD_TIMEOUT = 30.0
# Times a call is sent when the replica it reached died under it.
ATTEMPTS = 4


class RayShard:
    """The router's client of one shard's Serve application."""

    def __init__(self, handle: Any, name: str, timeout: float = SHARD_TIMEOUT) -> None:
        self.handle = handle
        self.name = name
        self.timeout = timeout
        self.retried = 0

    def submit(self, method: str, *args: Any) -> _RayCall:
        return _RayCall(self, method, args)


class _RayCall:
    def __init__(self, shard: RayShard, method: str, args: tuple[Any, ...]) -> None:
        self.shard, self.method, self.args = shard, method, args
        self.response = self._send()

    def _send(self) -> Any:
        try:
            return getattr(self.shard.handle, self.method).remote(*self.args)
        except Exception as exc:  # the application is gone, or Serve is down
            raise self._unavailable(exc) from exc

    def result(self) -> Any:
        from ray.exceptions import RayActorError, RayTaskError
        from ray.serve.exceptions import ReplicaUnavailableError

        for attempt in range(ATTEMPTS):
            try:
                return self.response.result(timeout_s=self.shard.timeout)
            except RayTaskError as exc:  # the shard raised: a user's error goes back as it is, anything else names the shard
                cause = getattr(exc, "cause", None)
                if isinstance(cause, SearchkitError):
                    raise cause from None
                raise self._unavailable(exc) from exc
            except (RayActorError, ReplicaUnavailableError) as exc:  # the replica died with the call: send it again
                if attempt == ATTEMPTS - 1:
                    raise self._unavailable(exc) from exc
                self.shard.retried += 1
                time.sleep(0.05 * (attempt + 1))
                self.response = self._send()
            except TimeoutError as exc:
                raise self._unavailable(exc, f"did not answer within {self.shard.timeout:g} s") from exc
            except Exception as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _unavailable(self, exc: BaseException, what: str | None = None) -> ShardUnavailableError:
        reason = what or f"failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})"
        return ShardUnavailableError(
            f"{self.shard.name} {reason}; no results are returned rather than results without it: "
            "check the shard's replicas (serve status) and search again"
        )


def deploy_shards(
    path: str | Path,
    *,
    replicas: int = 1,
    address: str = "auto",
    replica_cpus: float = 1.0,
    timeout: float = SHARD_TIMEOUT,
    prefix: str = APP_PREFIX,
) -> tuple[ShardLayout, list[RayShard]]:
    """Deploy every shard in ``path`` as a Ray Serve application of ``replicas`` replicas; returns their clients.

    Applications are named ``{prefix}-shard-00``, ... and are replaced if they run
    already. Serve runs without HTTP proxies: only the router talks to the shards.
    """
    if replicas < 1:
        raise SearchkitError(f"--replicas must be at least 1, got {replicas}")
    root = Path(path).resolve()
    layout = ShardLayout.read(root)
    connect(address)
    from ray import serve

    serve.start(proxy_location="Disabled")
    deployment = serve.deployment(
        ShardSearcher, num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus},
        max_ongoing_requests=16, health_check_period_s=2, health_check_timeout_s=10,
    )
    folders = layout.paths(root)
    names = [f"{prefix}-shard-{number:02d}" for number in range(len(folders))]
    targets = [
        serve.RunTarget(deployment.options(name="Shard").bind(str(folder), layout.field_types, number), name=name, route_prefix=None)
        for number, (folder, name) in enumerate(zip(folders, names))
    ]
    handles = serve.run_many(targets)  # every shard starts at once; returns when all are running
    return layout, [
        RayShard(handle, f"shard {number} ({folder}, Ray Serve application {name})", timeout)
        for number, (handle, folder, name) in enumerate(zip(handles, folders, names))
    ]


def open_on_ray(
    path: str | Path,
    *,
    replicas: int = 1,
    address: str = "auto",
    model: str | None = None,
    precision: str = "auto",
    replica_cpus: float = 1.0,
    timeout: float = SHARD_TIMEOUT,
) -> ShardedIndex:
    """The shards in ``path`` deployed on Ray Serve (see :func:`deploy_shards`), searched as one index from here."""
    layout, clients = deploy_shards(
        path, replicas=replicas, address=address, replica_cpus=replica_cpus, timeout=timeout
    )
    config = read_manifest(layout.paths(Path(path))[0])
    return ShardedIndex(path, layout, clients, query_embedder(config, model, precision))

"""Joining a Ray cluster, or starting a local Ray runtime, with one clear error when Ray is missing."""

from __future__ import annotations

from typing import Any

from searchkit.errors import ConfigError

__all__ = ["connect", "require_ray", "in_loopback_namespace"]


def require_ray() -> Any:
    """The ``ray`` module, or an error that says how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed; install searchkit with its Ray extra: pip install 'searchkit[ray]'") from None
    return ray


def connect(address: str = "auto") -> Any:
    """Join the Ray cluster at ``address`` (``host:port`` or ``ray://host:port``); ``auto`` finds or starts one.

    ``auto`` joins the cluster named by ``RAY_ADDRESS``, else one started on this machine
    with ``ray start``, else starts a local Ray runtime for this process. A process that
    is already connected stays connected. The worker processes import searchkit
    themselves, so every node needs it installed (the same version as here).
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    try:
        if address == "auto":
            ray.init(log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot join the Ray cluster at {address!r} ({exc}); give the head node's address (ray start --head "
            "prints it) or 'auto' for a local runtime"
        ) from exc
    return ray


def in_loopback_namespace(command: list[str]) -> list[str]:
    """``command`` run in a private network namespace whose only interface is loopback, brought up.

    On one machine, a Ray cluster registers its nodes under the machine's network address
    even when told 127.0.0.1; in such a namespace (``unshare -rn``, no root needed where
    user namespaces are allowed) that address is 127.0.0.1 and nothing leaves the
    machine. Tests and benchmarks run their clusters this way.
    """
    return ["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command]

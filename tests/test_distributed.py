"""searchkit on a real multi-node Ray cluster: each check of tests/ray_cluster_checks.py, reported here one by one.

The checks run in one pytest subprocess inside a private network namespace
(``unshare -rn``, then loopback up): there Ray's nodes register as 127.0.0.1 and no
traffic can leave the machine. One subprocess starts one cluster for all the checks.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'searchkit[ray]'")

from searchkit.distributed.runtime import in_loopback_namespace  # noqa: E402

CHECKS_FILE = Path(__file__).with_name("ray_cluster_checks.py")
CHECKS = [node.name for node in ast.parse(CHECKS_FILE.read_text()).body
          if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")]
# The whole run, cluster start included; it takes about a minute on a quiet 2-core machine.
TIMEOUT_S = 600


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(in_loopback_namespace(["true"]), capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Each check's failure text (None when it passed), from one run of the checks in a network namespace."""
    if not _namespaces_work():
        pytest.skip("unshare -rn is not permitted here: the Ray checks need a private network namespace")
    report = tmp_path_factory.mktemp("ray") / "checks.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(CHECKS_FILE.parents[1]), os.environ.get("PYTHONPATH")])),
               SEARCHKIT_KEEP_CACHE_DIR="1", RAY_USAGE_STATS_ENABLED="0")
    run = subprocess.run(
        in_loopback_namespace([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(CHECKS_FILE)]),
        cwd=CHECKS_FILE.parents[1], env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    if not report.is_file():
        pytest.fail(f"the Ray checks did not run (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    found: dict[str, str | None] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        found[case.get("name", "")] = None if problem is None else f"{problem.tag}: {problem.get('message')}\n{problem.text}"
    return found


@pytest.mark.parametrize("check", CHECKS)
def test_on_a_ray_cluster(outcomes: dict[str, str | None], check: str) -> None:
    assert check in outcomes, f"{check} did not run; ran: {sorted(outcomes)}"
    assert outcomes[check] is None, outcomes[check]

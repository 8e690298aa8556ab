"""On Ray, a study's cells spread across the nodes of a real cluster (issue "The answer map").

The cluster is started the way users start one, from the command line: ``ray start --head``,
then a second node, ``ray start --address``, here on the same machine; the study joins it as
``regspeed study --backend ray --address`` does. Its store must equal the local backend's, and
its batches must have run on both nodes: each node has a folder of its own, whose worker logs
name the tasks the node ran (Ray's state API, ``ray.util.state.list_tasks``, would say it too,
but it is served by the dashboard, which the ``ray`` extra, Ray's core, does not include).

Everything listens on loopback (127.0.0.1) and uses Ray's token authentication, with a token of
the test's own (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``) for both nodes and the driver.
Two things in Ray 2.60 stand in the way of a loopback cluster, both worked around here:

- On Linux, Ray replaces a loopback node address (and a loopback ``--address``) by the machine's
  external one (``resolve_ip_for_localhost``) unless ``ray_constants.ENABLE_RAY_CLUSTER`` is
  off; its environment variable is ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` (read at import). The
  head and the driver run with it off. ``ray start --address`` refuses to start a second node
  while it is off, and with it on joins the external address, where a loopback head does not
  listen; so the second node runs Ray's own ``ray start`` command with that replacement alone
  switched off (:data:`SECOND_NODE`). A second node on another machine needs none of this.
- ``ray start`` accepts ``--temp-dir`` per node, but its sockets must fit AF_UNIX's 107 bytes, and
  pytest's folders are too deep for that: the nodes' folders are a short temporary folder,
  removed afterwards (the nodes' console output stays in ``tmp_path``).

The nodes run in the foreground (``ray start --block``) in sessions of their own, so that the
test stops exactly the processes it started (``ray stop`` would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_ray_binding import is_loopback, listening_sockets
from test_study import TWO_CELLS, store_contents

from regspeed.study import runner
from regspeed.study import spec as spec_module

RAY = str(Path(sys.executable).with_name("ray"))  # the CLI of the Ray this Python imports
STARTED = "Ray runtime started."  # what `ray start` prints once its node is up
START_SECONDS = 120  # a loaded two-core machine starts a node in about 10 s
STOP_SECONDS = 30

# `ray start` itself, with Ray's replacement of loopback addresses by the machine's external one
# switched off: a second node on this machine joins the loopback head and listens on loopback.
SECOND_NODE = (
    "import sys\n"
    "from ray._private import services\n"
    "services.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv[0] = 'ray'\n"
    "main()\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Cluster:
    address: str  # the head's GCS, host:port
    token: Path  # the cluster's authentication token
    folder: Path  # the nodes' folders (--temp-dir): head, second
    nodes: list[subprocess.Popen]  # the two `ray start --block` processes, head first


def start_node(command: list[str], environment: dict[str, str], log: Path, nodes: list[subprocess.Popen]) -> None:
    """Start a `ray start --block` command in a session of its own, add it to ``nodes`` (to be
    stopped whatever happens next), and return once its node is up."""
    with log.open("w") as output:
        process = subprocess.Popen(
            command, env=environment, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    nodes.append(process)
    deadline = time.monotonic() + START_SECONDS
    while STARTED not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the node did not start ({' '.join(command)}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_node(process: subprocess.Popen) -> None:
    """Stop a node we started and everything it started: SIGTERM (Ray drains the node and stops
    its processes), then SIGKILL to whatever of its session is left."""
    import psutil

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_SECONDS)
    for child in descendants:  # by pid: only those this node started
        with contextlib.suppress(psutil.Error):
            child.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # its session's group (setsid: the group is its pid)
    process.wait()


def processes_in(folder: str) -> list:
    """Ray processes (other than this one) whose command line names ``folder``."""
    import psutil

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.info["pid"] != os.getpid() and folder in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


def tree(process: subprocess.Popen) -> list:
    """The process and every process it started."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Two Ray nodes on this machine, listening on loopback only, with token authentication;
    stopped (and checked gone) afterwards, whatever the test did."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))  # as `ray get-auth-token --generate` makes one
    token.chmod(0o600)
    environment = {key: value for key, value in os.environ.items() if key not in {"RAY_ADDRESS", "RAY_AUTH_TOKEN"}}
    environment |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    temp = Path(tempfile.mkdtemp(prefix="regspeed-ray-"))  # short: Ray's sockets live under it
    port = free_port()
    common = ["--block", "--num-cpus=1", "--disable-usage-stats"]
    head = [
        RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
        "--include-dashboard=false",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--temp-dir={temp}/head", *common,
    ]  # fmt: skip
    second = [
        sys.executable, "-c", SECOND_NODE, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={free_port()}", f"--temp-dir={temp}/second", *common,
    ]  # fmt: skip
    nodes: list[subprocess.Popen] = []
    try:
        start_node(head, environment | {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, tmp_path / "head.log", nodes)
        start_node(second, environment, tmp_path / "second.log", nodes)
        yield Cluster(f"127.0.0.1:{port}", token, temp, nodes)
    finally:
        import ray

        ray.shutdown()
        for node in reversed(nodes):
            stop_node(node)
        left = processes_in(str(temp))
        for process in left:  # started by our nodes (their folder is on its command line), yet still there
            process.kill()
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes outlived the cluster: {left}"


@contextlib.contextmanager
def joining(cluster: Cluster) -> Iterator[None]:
    """This process as the driver of a user who joins the cluster (``regspeed study --backend ray
    --address``): the cluster's token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN_PATH``; with an
    address Ray never turns token mode on by itself); the runner itself keeps Ray from replacing
    the loopback address by the machine's external one (``runner._join_ray``). Ray caches its authentication mode and
    token: they are read again now and once more afterwards, when Ray is shut down and all is
    back as it was."""
    import ray
    from ray._private.authentication_test_utils import reset_auth_token_state

    if ray.is_initialized():
        ray.shutdown()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.delenv("RAY_ADDRESS", raising=False)
            patch.delenv("RAY_AUTH_TOKEN", raising=False)
            patch.setenv("RAY_AUTH_MODE", "token")
            patch.setenv("RAY_AUTH_TOKEN_PATH", str(cluster.token))
            reset_auth_token_state()
            try:
                yield
            finally:
                ray.shutdown()
    finally:
        reset_auth_token_state()


def batches_run(node_folder: Path) -> int:
    """How many batches a node's workers ran: its log folder has a file per worker process, to
    which Ray writes the name of every task the worker starts (the marker its log monitor uses)."""
    from ray._private.ray_constants import LOG_PREFIX_TASK_NAME

    marker = f"{LOG_PREFIX_TASK_NAME}_execute_batch_list"
    logs = node_folder / "session_latest" / "logs"
    return sum(path.read_text(errors="replace").splitlines().count(marker) for path in logs.glob("worker-*.out"))


@pytest.mark.slow
def test_cells_spread_across_the_nodes_of_a_cluster(cluster: Cluster, tmp_path: Path) -> None:
    import ray

    spec = spec_module.parse(TWO_CELLS, "cells.toml")
    reference = tmp_path / "local"
    runner.run(spec, reference, TWO_CELLS)
    folder = tmp_path / "cluster"
    with joining(cluster):
        options = {"address": cluster.address, "cpus_per_batch": 1}
        outcome = runner.run(spec, folder, TWO_CELLS, backend="ray", backend_options=options)
        nodes = [node for node in ray.nodes() if node["Alive"]]
        listening = [entry for node in cluster.nodes for entry in listening_sockets(tree(node))]

    assert outcome.runs_total == 8 and outcome.runs_failed == 0 and not outcome.already_finished
    contents = store_contents(folder)
    assert contents == store_contents(reference)

    # The study ran on a cluster of our two nodes, both on loopback, and each node ran batches:
    # two cells of two batches each, one CPU a node, and all batches submitted at once.
    folders = [cluster.folder / name for name in ("head", "second")]
    assert sorted(Path(node["RayletSocketName"]).parents[2] for node in nodes) == folders
    assert {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}
    ran = [batches_run(node_folder) for node_folder in folders]
    assert sum(ran) == len(contents["batches"]) == 4 and min(ran) >= 1, f"batches run by the head, the second: {ran}"

    # The cluster, its workers included, listens on loopback only.
    assert {"gcs_server", "raylet"} <= {name for _, name, _, _ in listening}
    exposed = sorted(entry for entry in listening if not is_loopback(entry[2]))
    assert not exposed, f"the cluster listens beyond loopback (pid, process, address, port): {exposed}"

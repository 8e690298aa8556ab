"""The local Ray that ``regspeed study --backend ray`` starts listens on loopback only (issue 19).

Ray before 2.52 has no authentication (and a cluster started with ``ray start`` still has none
unless asked), so a Ray server reachable from the network lets anyone run code on the machine.
This starts Ray through regspeed's own code path (a tiny study, no ``--address``) and inspects
the listening sockets of every Ray process while a batch runs.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from regspeed.study import runner
from regspeed.study import spec as spec_module

# One batch of one run, two chunks: enough for a worker to be up while the driver records a chunk.
SPEC = """
name = "binding"
task = "snake-ppo"
seeds = 1
budget = 1024
[config.env]
rows = 5
cols = 5
observation = "features"
[config.network]
hidden = [8]
[config.ppo]
num_envs = 8
rollout_steps = 16
epochs = 1
minibatches = 2
[evaluation]
every_updates = 4
episodes = 2
max_steps = 20
[execution]
chunk_updates = 4
"""

RAY_SETS_ITSELF = {"RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "PYTHONBREAKPOINT"}


def is_loopback(host: str) -> bool:
    """Whether a bound address accepts connections from this machine only (IPv4-mapped IPv6 included)."""
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def listening_sockets(processes: list) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every TCP socket these processes listen on."""
    import psutil

    found = []
    for process in processes:
        try:
            name, connections = process.name(), process.net_connections(kind="tcp")
        except psutil.Error:  # it exited meanwhile
            continue
        found += [(process.pid, name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


def own_listening_sockets(psutil) -> list[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every TCP socket listening in this process and its descendants.

    Ray's processes (GCS, raylet, agents, workers) are all started by the driver, this process.
    """
    me = psutil.Process()
    return listening_sockets([me, *me.children(recursive=True)])


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # it would join that cluster instead
    switch_before = ray_constants.ENABLE_RAY_CLUSTER
    environment_before = dict(os.environ)
    seen: list[tuple[int, str, str, int]] = []

    def inspect(outcome, runs) -> None:  # called by the driver while the batch's worker is up
        if not seen:
            seen.extend(own_listening_sockets(psutil))

    try:
        spec = spec_module.parse(SPEC, "binding.toml")
        outcome = runner.run(spec, tmp_path, SPEC, backend="ray", on_chunk=inspect)
        assert outcome.runs_total == 1 and outcome.runs_failed == 0
        assert ray.is_initialized()
        seen.extend(own_listening_sockets(psutil))  # and once more after the study, Ray still up
        node_address = ray.util.get_node_ip_address()
    finally:
        ray.shutdown()

    names = {name for _, name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, f"Ray's servers were not found among {sorted(names)}"
    exposed = sorted({entry for entry in seen if not is_loopback(entry[2])})
    assert not exposed, f"Ray listens beyond loopback (pid, process, address, port): {exposed}"
    assert is_loopback(node_address)
    # What regspeed switched to start Ray is switched back; the environment changes only as a plain
    # `ray.init()` changes it (Ray 2.60 sets these three in the driver and leaves them).
    assert switch_before == ray_constants.ENABLE_RAY_CLUSTER
    changed = {key for key in {*environment_before, *os.environ} if environment_before.get(key) != os.environ.get(key)}
    assert changed <= RAY_SETS_ITSELF, changed

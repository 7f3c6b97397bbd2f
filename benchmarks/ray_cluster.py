"""A throwaway Ray cluster on this machine (a head and worker nodes), for the sweep's tests and
benchmark.

Each node is its own `ray start --block` process, as on separate machines; `stop()` ends these
alone (`ray stop` would end every Ray process of the machine, other people's too). The head
runs no tasks (0 CPUs): they go to the worker nodes.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START_TIMEOUT_S = 300.0  # a loaded 2-core machine takes a minute or more
STARTED = "Ray runtime started."  # what `ray start` prints once the node has joined


class LocalRayCluster:
    def __init__(self, workers: int = 2, cpus_per_worker: float = 1, env: dict[str, str] | None = None):
        self.workers, self.cpus_per_worker = workers, cpus_per_worker
        self.env = {**os.environ, **(env or {})}
        # Short: Ray's socket paths under it must fit in 107 characters.
        self.root = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.address = ""
        self.nodes: list[subprocess.Popen] = []

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> str:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self._node("head", "--head", "--port", str(port), "--num-cpus", "0",
                   "--include-dashboard", "false", "--temp-dir", str(self.root / "tmp"))
        for i in range(self.workers):
            self._node(f"worker{i}", "--address", self.address, "--num-cpus", f"{self.cpus_per_worker:g}")
        return self.address

    def _node(self, name: str, *args: str) -> None:
        """Start one node and wait until it has joined (a worker cannot join before the head is up)."""
        log = self.root / f"{name}.log"
        ray = str(Path(sys.executable).parent / "ray")
        cmd = [ray, "start", "--block", "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), *args]
        with open(log, "w") as out:
            self.nodes.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True))
        deadline = time.monotonic() + START_TIMEOUT_S
        while STARTED not in log.read_text():
            if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        """End every node: SIGTERM, then SIGKILL to whatever is left of each node's processes."""
        for node in reversed(self.nodes):
            _signal_group(node, signal.SIGTERM)
        deadline = time.monotonic() + 5  # then SIGKILL: a node drains for up to 30 s on SIGTERM
        for node in reversed(self.nodes):
            try:
                node.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(node, signal.SIGKILL)
            node.wait()
        self.nodes = []
        shutil.rmtree(self.root, ignore_errors=True)


def _signal_group(node: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(node.pid, sig)  # the node's session: `ray start` and the servers it started
    except ProcessLookupError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""One experiment of a sweep, as a Ray task on a cluster node: a fresh clone of the project at
the sweep's commit, `dvc exp run`, then its outputs and its git ref pushed (scripts/sweep.py
submits it).

The standard library only (and psutil, which DVC brings): this module travels to the nodes
with each task (pickled by value), and the project itself comes from git.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

LOG_LINES = 200  # of a run's output, kept with its outcome
STAGE_ERROR = re.compile(r"^[\w.]+ ERROR: (.+)$")  # a stage's logged error (vae_anomaly.io)
EXCEPTION = re.compile(r"^((?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b.*)$")  # a traceback's end
TOOL_ERROR = re.compile(r"^(?:ERROR|error|fatal): (.+)$")  # DVC's or git's
FAILED_STAGE = re.compile(r"failed to reproduce '([^']+)'")


class StepFailed(Exception):
    """A command of the task exited non-zero; the message is its one-line error."""


def one_line_error(output: str) -> str:
    """The error a person needs from a failed command's output. In this order: a stage's own
    message, an exception's last line (both after the failed stage's name), DVC's or git's."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    stage = FAILED_STAGE.search(output)
    for pattern in (STAGE_ERROR, EXCEPTION, TOOL_ERROR):
        for line in reversed(lines):
            if match := pattern.match(line):
                found = match.group(1)
                if stage and pattern is not TOOL_ERROR:
                    found = f"{stage.group(1)}: {found}"
                return found[:300]
    return lines[-1][:300] if lines else "no output"


def stop_process_tree(pid: int) -> None:
    import psutil

    try:
        parent = psutil.Process(pid)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass


def run_step(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> tuple[int, str]:
    """Run ``cmd``; its exit code and output (stdout and stderr)."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:  # short sleeps, not a blocking read, let Ray's cancel in
                time.sleep(0.2)
        except BaseException:  # the cancel is a KeyboardInterrupt: stop the run's stages too
            stop_process_tree(proc.pid)
            raise
        out.seek(0)
        output = out.read()
    if check and proc.returncode:
        shown = cmd[2:4] if cmd[1:2] == ["-m"] else cmd[:2]  # "dvc push", "git clone"
        raise StepFailed(f"{' '.join(shown)}: {one_line_error(output)}")
    return proc.returncode, output


def run_experiment(task: dict[str, Any], progress: Any) -> dict[str, Any]:
    """One experiment from a fresh clone to its pushed ref; returns its outcome."""
    started = time.monotonic()
    progress.started.remote(task["name"], ray.util.get_node_ip_address(), os.getpid())
    dvc = [sys.executable, "-m", "dvc"]
    threads = str(task["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "DVC_NO_ANALYTICS": "1",
           # `python` in dvc.yaml: this worker's interpreter, which has the requirements
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def outcome(status: str, error: str = "", output: str = "") -> dict[str, Any]:
        return {"name": task["name"], "status": status, "error": error, "seconds": time.monotonic() - started,
                "log": "\n".join(output.splitlines()[-LOG_LINES:])}

    clone = Path(tempfile.mkdtemp(prefix=f"vae-sweep-{task['name']}-"))
    try:
        # A retry after a push that the worker did not live to report finds the ref there.
        _, refs = run_step(["git", "ls-remote", task["git_url"], task["ref"]], clone, env)
        if refs.strip():
            return outcome("already pushed")
        run_step(["git", "clone", "--quiet", "--no-checkout", task["git_url"], "."], clone, env)
        run_step(["git", "checkout", "--quiet", "--detach", task["commit"]], clone, env)
        if task["dvc_remote"]:
            run_step([*dvc, "remote", "default", "--local", task["dvc_remote"]], clone, env)
        overrides = [arg for override in task["overrides"] for arg in ("-S", override)]
        code, output = run_step([*dvc, "exp", "run", "--pull", "-n", task["name"], *overrides,
                                 *task["targets"]], clone, env, check=False)
        if code:
            return outcome("failed", one_line_error(output), output)
        # Outputs first: a ref on the git remote then always has its outputs in the DVC remote.
        run_step([*dvc, "push"], clone, env)
        run_step([*dvc, "exp", "push", "--no-cache", "origin", task["name"]], clone, env)
        return outcome("pushed", output=output)
    except StepFailed as err:
        return outcome("failed", str(err))
    finally:
        shutil.rmtree(clone, ignore_errors=True)


class Progress:
    """Ray actor that hears from each task as it starts (Ray itself tells only of the end)."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str, int]] = []  # (experiment, node address, worker pid)

    def started(self, name: str, node: str, pid: int) -> None:
        self.starts.append((name, node, pid))

    def since(self, index: int) -> list[tuple[str, str, int]]:
        return self.starts[index:]

"""A throw-away git + DVC copy of the project, for the tests and the benchmarks.

``project_copy`` copies what `dvc repro` needs (PROJECT_FILES, and any ``extra`` folders such
as scripts/), applies dotted-key updates to its params.yaml (``set_params``), makes it a git
repository with a local identity and a DVC repository with analytics off, and commits it all,
so each test or benchmark starts from the same clean state and never touches this checkout.
The subprocesses run with this interpreter's folder first on PATH (``tool_env``), so that
``python`` in dvc.yaml is ours.

The queue helpers wait for `dvc queue start` without polling `dvc queue status` (a whole DVC
start-up each time): a finished experiment is a new git ref under refs/exps; and they stop the
queue's detached workers, so none outlives its temporary project.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", "stages", "vae_anomaly")


def tool_env(**extra: str) -> dict[str, str]:
    """This environment with our interpreter's folder first on PATH (``python`` in dvc.yaml),
    DVC's analytics off and DVCLive's posts to DVC Studio too: a copy never reaches the network."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "true", **extra}


def run_tool(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` in ``cwd``; its stdout, or a RuntimeError with its command and output."""
    done = subprocess.run(cmd, cwd=cwd, env=env or tool_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def dvc_cmd(*args: str) -> list[str]:
    """DVC of this interpreter (``-m dvc``): the one installed with the project."""
    return [sys.executable, "-m", "dvc", *args]


def set_params(params: dict[str, Any], updates: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys (``"train.epochs"``) in the nested params dict, in place."""
    for dotted, value in updates.items():
        *sections, key = dotted.split(".")
        node = params
        for section in sections:
            node = node[section]
        if key not in node:
            raise KeyError(f"params.yaml has no key {dotted!r}")
        node[key] = value
    return params


def project_copy(dest: Path, updates: dict[str, Any], extra: Iterable[str] = ()) -> Path:
    """A git + DVC repository at ``dest`` (created if need be) holding the project's
    PROJECT_FILES and ``extra`` (paths relative to the project root), with ``updates`` to its
    params, committed."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*PROJECT_FILES, *extra):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    params = set_params(yaml.safe_load((dest / "params.yaml").read_text()), updates)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_tool(["git", "init", "-q"], dest)
    run_tool(["git", "config", "user.email", "project-copy@example.com"], dest)
    run_tool(["git", "config", "user.name", "project copy"], dest)
    run_tool(dvc_cmd("init", "-q"), dest)
    run_tool(dvc_cmd("config", "core.analytics", "false"), dest)
    commit(dest, "project")
    return dest


def commit(project: Path, message: str) -> None:
    """Commit everything in ``project``'s working tree."""
    run_tool(["git", "add", "-A"], project)
    run_tool(["git", "commit", "-qm", message], project)


def experiment_refs(project: Path) -> set[str]:
    """Git refs of finished DVC experiments (cheap to poll, unlike `dvc queue status`)."""
    out = run_tool(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], project)
    return set(out.split())


def wait_for_experiments(project: Path, known: set[str], count: int, timeout: float) -> None:
    """Wait until ``count`` experiment refs beyond ``known`` exist; a RuntimeError with the
    queue's status after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(experiment_refs(project) - known) < count:
        if time.monotonic() > deadline:
            status = subprocess.run(dvc_cmd("queue", "status"), cwd=project, env=tool_env(),
                                    capture_output=True, text=True)
            raise RuntimeError(f"the queue did not finish {count} experiments in {timeout:.0f} s:\n"
                               f"{status.stdout}{status.stderr}")
        time.sleep(0.5)


def stop_queue_workers(project: Path, timeout: float = 120.0) -> None:
    """Ask the queue's workers to stop and wait until their processes are gone (they are
    detached, so we read their pids from the files DVC's task runner keeps)."""
    run_tool(dvc_cmd("queue", "stop"), project)
    pidfiles = list((project / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.pid"))
    pids = [int(f.read_text()) for f in pidfiles if f.read_text().strip().isdigit()]
    deadline = time.monotonic() + timeout
    while any(is_queue_worker(pid) for pid in pids):
        if time.monotonic() > deadline:
            log.warning("queue workers %s of %s still running after %.0f s", pids, project, timeout)
            return
        time.sleep(0.5)


def is_queue_worker(pid: int) -> bool:
    """Whether ``pid`` is (still) a DVC queue worker: a pid can be reused once it exits."""
    try:
        return b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False

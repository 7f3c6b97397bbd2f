"""scripts/sweep.py: the plan and the checks without a cluster, then real sweeps on a local Ray
cluster (a head and two worker nodes of one CPU) with a bare git remote and a DVC remote in
temporary folders, on the shrunk project of tests/test_pipeline.py (baselines off)."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from test_pipeline import dvc, make_project, run

from benchmarks.ray_cluster import LocalRayCluster
from scripts.sweep import check_project, experiment_ref, main, plan, pushed_names
from scripts.sweep_task import one_line_error
from vae_anomaly.errors import UserError

SWEEP = ["model.beta=0.5,2", "train.seed=range(0,2)"]
STAGES = ("evaluate",)  # the sweeps on the cluster skip `plot`, a quarter of a run's time


def set_args(overrides: list[str]) -> list[str]:
    return [arg for override in overrides for arg in ("-S", override)]


# ---------------------------------------------------------------------------------------------
# Without a cluster
# ---------------------------------------------------------------------------------------------

def test_plan_expands_value_lists_and_range_as_dvc_does():
    experiments = plan(SWEEP, "sweep")
    assert [e.overrides for e in experiments] == [
        ("model.beta=0.5", "train.seed=0"), ("model.beta=0.5", "train.seed=1"),
        ("model.beta=2", "train.seed=0"), ("model.beta=2", "train.seed=1"),
    ]
    assert len({e.name for e in experiments}) == 4
    assert all(re.fullmatch(r"sweep-[0-9a-f]{8}", e.name) for e in experiments)
    # the same sweep written in another order names the same experiments
    assert {e.name for e in plan(SWEEP[::-1], "sweep")} == {e.name for e in experiments}
    assert plan(["other.yaml:a=1,2"], "x")[1].overrides == ("other.yaml:a=2",)
    # the same overrides on other stages are other experiments
    assert not {e.name for e in plan(SWEEP, "sweep", STAGES)} & {e.name for e in experiments}


def test_plan_refuses_what_dvc_would_refuse():
    with pytest.raises(UserError, match="cannot read the -S arguments.*model.hidden_dims"):
        plan(["model.hidden_dims=[16,8"], "sweep")
    with pytest.raises(UserError, match="--name 'a b'"):
        plan(SWEEP, "a b")


def test_resources_are_checked_before_anything_runs():
    with pytest.raises(UserError, match="--gpus 1.5: expected a fraction below 1"):
        main(["--gpus", "1.5", "-S", "model.beta=1"])
    with pytest.raises(UserError, match="--cpus 0"):
        main(["--cpus", "0"])


def test_one_line_error_names_the_stage_and_its_message():
    stage = ("Running stage 'train':\n> python -m stages.train\n"
             "vae_anomaly ERROR: model.beta = -1 is not allowed; expected a number >= 0\n"
             "ERROR: failed to reproduce 'train': failed to run: python -m stages.train, exited with 2\n")
    assert one_line_error(stage) == "train: model.beta = -1 is not allowed; expected a number >= 0"
    crash = ("Traceback (most recent call last):\n  File \"x.py\", line 1\n"
             "torch.OutOfMemoryError: CUDA out of memory\n"
             "ERROR: failed to reproduce 'score': failed to run: python -m stages.score, exited with 1\n")
    assert one_line_error(crash) == "score: torch.OutOfMemoryError: CUDA out of memory"
    assert one_line_error("fatal: repository '/nowhere' does not exist\n") == "repository '/nowhere' does not exist"


def test_check_project_says_what_the_nodes_would_miss(tmp_path, monkeypatch):
    root, remote = tmp_path / "project", tmp_path / "remote.git"
    root.mkdir()
    monkeypatch.chdir(root)
    for cmd in (["init", "-q"], ["config", "user.email", "t@example.com"], ["config", "user.name", "t"]):
        run(["git", *cmd], root)
    (root / ".dvc").mkdir()
    (root / ".dvc/config").write_text("")
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "one"], root)
    with pytest.raises(UserError, match="no git remote 'origin'"):
        check_project("origin", None)
    run(["git", "init", "-q", "--bare", str(remote)], tmp_path)
    run(["git", "remote", "add", "origin", str(remote)], root)
    with pytest.raises(UserError, match=r"is not on git remote 'origin'.*git push origin HEAD"):
        check_project("origin", None)

    def commit_config(text: str) -> None:
        (root / ".dvc/config").write_text(text)
        run(["git", "commit", "-q", "--allow-empty", "-am", "config"], root)
        run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], root)

    commit_config("")
    with pytest.raises(UserError, match="no default DVC remote"):
        check_project("origin", None)
    commit_config("[core]\n    remote = storage\n['remote \"storage\"']\n    url = ../storage\n")
    with pytest.raises(UserError, match="relative path '../storage'"):
        check_project("origin", None)
    with pytest.raises(UserError, match="DVC remote 'other' is not in the committed"):
        check_project("origin", "other")
    (root / "params.yaml").write_text("a: 1\n")
    run(["git", "add", "params.yaml"], root)
    with pytest.raises(UserError, match=r"uncommitted changes \(params.yaml\)"):
        check_project("origin", None)
    run(["git", "reset", "-q"], root)
    commit_config(f"[core]\n    remote = storage\n['remote \"storage\"']\n    url = {tmp_path / 'storage'}\n")
    target = check_project("origin", None)
    assert target.git_url == str(remote) and target.commit == run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    assert pushed_names(target) == set()
    run(["git", "push", "-q", "origin", f"HEAD:{experiment_ref(target.commit, 'sweep-0123abcd')}"], root)
    run(["git", "push", "-q", "origin", f"HEAD:{experiment_ref('f' * 40, 'sweep-other')}"], root)
    assert pushed_names(target) == {"sweep-0123abcd"}


# ---------------------------------------------------------------------------------------------
# On a local Ray cluster
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two worker nodes of one CPU; the tasks' clones go under ``cluster.clones``."""
    clones = tmp_path_factory.mktemp("node_tmp")
    with LocalRayCluster(workers=2, cpus_per_worker=1, env={"TMPDIR": str(clones)}) as started:
        started.clones = clones
        yield started


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Path:
    """The driver's project, reproduced, committed and pushed (git to a bare repository,
    outputs to a DVC remote) as a user leaves it before a sweep. The tasks pull what their
    overrides leave unchanged (`prepare`, `baselines`) and run the rest."""
    root = make_project(tmp_path_factory.mktemp("project"), extra=("scripts",))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["baselines"]["names"] = []
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    remotes = tmp_path_factory.mktemp("remotes")
    run(["git", "init", "-q", "--bare", str(remotes / "project.git")], remotes)
    run(["git", "remote", "add", "origin", str(remotes / "project.git")], root)
    dvc("remote", "add", "-d", "storage", str(remotes / "dvc"), cwd=root)
    dvc("repro", cwd=root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "run, and the remotes"], root)
    run(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], root)
    dvc("push", cwd=root)
    return root


def sweep(project: Path, cluster, *args: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "scripts.sweep", "--address", cluster.address, *args], project, check=False)


class Driver:
    """`python -m scripts.sweep` in the background, its output read as it comes."""

    def __init__(self, project: Path, cluster, *args: str):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "scripts.sweep", "--address", cluster.address, *args],
                                     cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 600) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.output)):
            assert self.proc.poll() is None, f"the sweep ended before {pattern!r}:\n{self.output}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{self.output}"
            time.sleep(0.2)
        return match

    def finish(self, timeout: float = 900) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.proc.kill()
        self.reader.join()
        return code


def wait_until_running(cluster, name: str, timeout: float = 600) -> None:
    """Until the task's `dvc exp run` has pulled the prepared data into its clone: mid-run."""
    deadline = time.monotonic() + timeout
    while not list(cluster.clones.glob(f"vae-sweep-{name}-*/data/prepared/features.npz")):
        assert time.monotonic() < deadline, f"{name} did not start its run in {timeout} s"
        time.sleep(0.2)


def squeezed(text: str) -> str:
    """Markdown tables with their cells' padding taken out: `| a | b |` however aligned."""
    return re.sub(r" {2,}", " ", text)


def exp_metrics(root: Path) -> dict[str, dict]:
    """Experiment name -> its metrics files, for the experiments of HEAD (`dvc exp show --json`)."""
    shown = json.loads(run([sys.executable, "-m", "dvc", "exp", "show", "--json"], root).stdout)
    return {e["name"]: {path: m.get("data") for path, m in e["revs"][0]["data"]["metrics"].items()}
            for e in shown[1].get("experiments") or []}


def remote_experiments(root: Path) -> set[str]:
    refs = run(["git", "ls-remote", "origin", "refs/exps/*"], root).stdout.split()[1::2]
    return {ref.rsplit("/", 1)[1] for ref in refs}


@pytest.fixture(scope="module")
def swept(origin, cluster) -> Driver:
    """The 4-experiment sweep, during which the worker process running the first experiment is
    killed once that experiment's `dvc exp run` has begun."""
    victim = plan(SWEEP, "sweep", STAGES)[0].name
    driver = Driver(origin, cluster, *STAGES, *set_args(SWEEP))
    pid = int(driver.wait_for(rf"running {victim} on \S+, pid (\d+)").group(1))
    wait_until_running(cluster, victim)
    os.kill(pid, signal.SIGKILL)
    driver.finish()
    return driver


def test_sweep_gives_the_metrics_of_the_same_runs_one_by_one(swept, origin, tmp_path, monkeypatch):
    assert swept.proc.returncode == 0, swept.output
    names = [e.name for e in plan(SWEEP, "sweep", STAGES)]
    assert "| experiment | result | overrides | error |" in squeezed(swept.output)
    on_cluster = exp_metrics(origin)
    assert set(on_cluster) == set(names)
    assert remote_experiments(origin) >= set(names)

    # The same four, one by one in a clone, with the tasks' one thread (the summation order of
    # a multi-threaded matrix product differs). The killed experiment's retry must match too.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    solo = tmp_path / "solo"
    url = run(["git", "remote", "get-url", "origin"], origin).stdout.strip()
    run(["git", "clone", "-q", "-b", "main", url, str(solo)], origin)
    run(["git", "config", "user.email", "test@example.com"], solo)
    run(["git", "config", "user.name", "test"], solo)
    dvc("pull", "prepare", "baselines", cwd=solo)  # what the tasks pulled
    for exp in plan(SWEEP, "sweep", STAGES):
        dvc("exp", "run", "-n", exp.name, *set_args(list(exp.overrides)), *STAGES, cwd=solo)
    one_by_one = exp_metrics(solo)
    for name in names:
        assert on_cluster[name]["reports/metrics.json"]["roc_auc"] is not None
        assert on_cluster[name] == one_by_one[name], name


def test_same_sweep_again_skips_the_pushed_experiments(swept, origin, cluster):
    again = sweep(origin, cluster, *STAGES, *set_args(SWEEP))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 already pushed to origin, 0 to run" in again.stderr
    assert again.stdout.count("| already pushed |") == 4
    wider = sweep(origin, cluster, *STAGES, "--dry", *set_args(["model.beta=0.5,2", "train.seed=range(0,3)"]))
    assert "sweep of 6 experiments" in wider.stderr and "4 already pushed to origin, 2 to run" in wider.stderr
    assert squeezed(wider.stdout).count("| to run |") == 2


def test_pulled_experiments_are_read_by_the_aggregate_script(swept, origin, tmp_path):
    table = run([sys.executable, "-m", "scripts.aggregate", "--out", str(tmp_path)], origin).stdout
    latent = yaml.safe_load((origin / "params.yaml").read_text())["model"]["latent_dim"]
    rows = squeezed(table).splitlines()  # beta, latent size, seeds: the two seeds of each beta in one row
    assert any(row.startswith(f"| 0.5 | {latent} | 2 |") for row in rows), table
    assert any(row.startswith(f"| 2 | {latent} | 2 |") for row in rows), table


def test_a_worker_killed_mid_run_is_retried_and_nothing_is_lost(swept, origin):
    assert swept.proc.returncode == 0, swept.output
    victim = plan(SWEEP, "sweep", STAGES)[0].name
    assert f"running {victim} (attempt 2)" in swept.output
    assert f"pushed {victim}" in swept.output
    try:
        dvc("exp", "apply", victim, cwd=origin)  # its outputs came back through the DVC remote
        assert "up to date" in dvc("status", "--with-deps", *STAGES, cwd=origin)
    finally:
        run(["git", "reset", "-q", "--hard"], origin)


def test_a_run_that_fails_is_reported_and_the_others_go_on(origin, cluster):
    bad, good = plan(["model.beta=-1,3"], "sweep", ("train",))  # `train` alone: enough to fail
    done = sweep(origin, cluster, "train", "-S", "model.beta=-1,3")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"failed {bad.name}: train: model.beta = -1 is not allowed; expected a number >= 0" in done.stderr
    assert f"pushed {good.name}" in done.stderr
    assert (origin / f".dvc/tmp/sweep/{bad.name}.log").is_file()
    metrics = exp_metrics(origin)
    assert metrics[good.name]["reports/train/metrics.json"]["step"] > 0 and bad.name not in metrics  # DVCLive's epoch


def test_ctrl_c_cancels_the_tasks_and_leaves_nothing_half_pushed(origin, cluster):
    overrides = ["train.seed=range(20,22)"]
    experiments = plan(overrides, "sweep", STAGES)
    driver = Driver(origin, cluster, *STAGES, *set_args(overrides))
    for exp in experiments:
        wait_until_running(cluster, exp.name)
    driver.proc.send_signal(signal.SIGINT)
    assert driver.finish(timeout=300) == 130, driver.output
    assert "interrupted: cancelling 2 experiments" in driver.output
    for exp in experiments:
        assert exp.name not in remote_experiments(origin)
        assert not list(cluster.clones.glob(f"vae-sweep-{exp.name}-*")), "a cancelled task left its clone"

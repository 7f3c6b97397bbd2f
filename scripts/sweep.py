"""Run a sweep of DVC experiments as Ray tasks, on whatever cluster `ray.init` reaches.

    python -m scripts.sweep -S 'model.beta=0.1,1,10' -S 'train.seed=range(0,3)'
    python -m scripts.sweep --address auto --cpus 2 --gpus 0.25 -S train.device=cuda -S ...
    python -m scripts.sweep evaluate -S ...      # stages up to evaluate only, as `dvc exp run evaluate`

The -S arguments are those of `dvc exp run --queue -S`, expanded by DVC's own parser (value
lists, `range(...)`, `choice(...)`, `other.yaml:key=value`): one experiment per combination,
named `<--name>-<8 hex digits of its overrides and stages>`, so the same sweep always gives
the same names. Each experiment is one Ray task which, on whichever node runs it:

1. clones the git remote (--git-remote, default origin) at the commit the driver stands on
   (committed and pushed: nothing else reaches the nodes);
2. runs `dvc exp run --pull -n NAME -S ... [stages]` with OMP_NUM_THREADS set to its CPUs:
   the stages whose inputs did not change take their outputs from the DVC remote (the
   default one of the committed .dvc/config, or --dvc-remote), the others run;
3. pushes the outputs (`dvc push`), then the experiment's git ref (`dvc exp push`). So a ref
   on the git remote always has its outputs in the DVC remote: a task stopped at any moment
   leaves a whole experiment or none.

The driver prints each experiment as it starts, ends or fails; skips those whose ref is
already on the git remote (running the same sweep again resumes it); and at the end pulls
them (`dvc exp pull`), so `dvc exp show`, `dvc exp apply` and `python -m scripts.aggregate`
see them as local ones. A task whose worker or node dies is retried (--retries); a run that
fails on its own (bad params, NaN loss) is reported with its one-line error while the others
go on. Ctrl-C cancels the tasks, lets them stop their runs and remove their clones, and pulls
what had finished. The task itself is scripts/sweep_task.py. Starting a cluster, and what each
node needs: docs/howto/cluster.md.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import cloudpickle
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from scripts import sweep_task
from scripts.experiment import markdown_table
from scripts.sweep_task import Progress, one_line_error, run_experiment
from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_PARAMS = "params.yaml"
POLL_S = 1.0
CANCEL_GRACE_S = 60.0  # for cancelled tasks to stop their runs and remove their clones
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130  # 130 = 128 + SIGINT, the shell's code for Ctrl-C
LOG_DIR = Path(".dvc/tmp/sweep")  # the output of failed runs (DVC ignores .dvc/tmp)


@dataclass(frozen=True)
class Experiment:
    name: str
    overrides: tuple[str, ...]  # `-S` arguments of `dvc exp run`
    targets: tuple[str, ...] = ()  # stages of `dvc exp run`; none: the whole pipeline


@dataclass(frozen=True)
class Origin:
    """The commit the tasks start from, and the remotes they clone from and push to."""

    commit: str
    git_remote: str  # its name here, for `dvc exp pull`
    git_url: str  # what each node clones
    dvc_remote: str | None  # None: the committed default


@dataclass(frozen=True)
class Resources:
    """What each experiment's task asks of Ray."""

    cpus: float
    gpus: float
    retries: int

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


# ---------------------------------------------------------------------------------------------
# The plan: experiments from the -S arguments
# ---------------------------------------------------------------------------------------------

def plan(set_params: list[str], prefix: str, targets: tuple[str, ...] = ()) -> list[Experiment]:
    """One experiment per combination of the `-S` arguments, as `dvc exp run --queue` makes
    them; duplicates once."""
    from dvc.exceptions import DvcException
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps
    from hydra.errors import HydraException

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise UserError(f"--name {prefix!r}: use letters, digits, '_', '.' and '-' (a git ref name)")
    try:
        sweeps = get_hydra_sweeps(to_path_overrides(set_params))
    except (HydraException, DvcException) as err:
        reason = str(err).splitlines()[0]
        raise UserError(f"cannot read the -S arguments {set_params}: {reason} "
                        "(the grammar of `dvc exp run --queue -S`)") from err
    experiments: dict[str, Experiment] = {}
    for sweep in sweeps:
        overrides = tuple(o if path == DEFAULT_PARAMS else f"{path}:{o}"
                          for path, values in sweep.items() for o in values)
        name = experiment_name(prefix, overrides, targets)
        experiments.setdefault(name, Experiment(name, overrides, targets))
    return list(experiments.values())


def experiment_name(prefix: str, overrides: tuple[str, ...], targets: tuple[str, ...] = ()) -> str:
    """The same overrides (and stages) in any order give the same name: how a second run of a
    sweep finds the experiments of the first."""
    key = [*sorted(overrides), *(f"stage {t}" for t in sorted(targets))]
    digest = hashlib.sha1("\n".join(key).encode()).hexdigest()
    return f"{prefix}-{digest[:8]}"


def experiment_ref(commit: str, name: str) -> str:
    """The git ref DVC keeps an experiment of baseline ``commit`` under."""
    from dvc.repo.experiments.refs import ExpRefInfo

    return str(ExpRefInfo(baseline_sha=commit, name=name))


# ---------------------------------------------------------------------------------------------
# The project: what the nodes will find on the remotes
# ---------------------------------------------------------------------------------------------

def git(*args: str, check: bool = True) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if check and done.returncode:
        raise UserError(f"`git {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip() if done.returncode == 0 else ""


def check_project(git_remote: str, dvc_remote: str | None) -> Origin:
    """The commit to run and the remotes, or a UserError saying what the nodes would miss."""
    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    if changed:
        listed = ", ".join(line[3:] for line in changed[:5]) + (", ..." if len(changed) > 5 else "")
        raise UserError(f"uncommitted changes ({listed}) would not reach the nodes, which clone "
                        f"commit {commit[:7]}: commit and push them, or `git stash` them")
    url = git("remote", "get-url", git_remote, check=False)
    if not url:
        raise UserError(f"no git remote {git_remote!r} here; add one that every node reaches "
                        f"(git remote add {git_remote} <url>) or name one with --git-remote")
    if is_local_path(url):
        url = str(Path(url).resolve())
    remote_tips = {line.split()[0] for line in git("ls-remote", "--heads", "--tags", url).splitlines()}
    if not any(subprocess.run(["git", "merge-base", "--is-ancestor", commit, tip],
                              capture_output=True).returncode == 0 for tip in remote_tips):
        raise UserError(f"commit {commit[:7]} is not on git remote {git_remote!r}, where the "
                        f"nodes clone it from: push it first (git push {git_remote} HEAD), or, "
                        f"if it is there, `git fetch {git_remote}` so that this clone knows it")
    check_dvc_remote(commit, dvc_remote)
    return Origin(commit, git_remote, url, dvc_remote)


def check_dvc_remote(commit: str, name: str | None) -> None:
    """The DVC remote must be in the committed .dvc/config (a node's clone has no other) and
    name a place every node reaches."""
    from configobj import ConfigObj

    config = ConfigObj(git("show", f"{commit}:.dvc/config", check=False).splitlines())
    name = name or config.get("core", {}).get("remote")
    how = ("dvc remote add -d storage <url every node reaches>, then commit and push "
           ".dvc/config; credentials stay out of git (docs/howto/cluster.md)")
    if not name:
        raise UserError(f"the committed .dvc/config has no default DVC remote, where the nodes "
                        f"push the outputs: {how}")
    url = config.get(f'remote "{name}"', {}).get("url")
    if not url:
        raise UserError(f"DVC remote {name!r} is not in the committed .dvc/config: {how}")
    if is_local_path(url) and not Path(url).is_absolute():
        raise UserError(f"DVC remote {name!r} is the relative path {url!r}, which each clone "
                        "would read in its own folder: give an absolute path or a URL")


def is_local_path(url: str) -> bool:
    """A plain path rather than a URL (scheme://) or an scp-like git address (host:path)."""
    return "://" not in url and not re.match(r"^[^/]+:", url)


def pushed_names(origin: Origin) -> set[str]:
    """Names of the experiments of ``origin.commit`` whose refs are on the git remote."""
    baseline = experiment_ref(origin.commit, "").rstrip("/")  # refs/exps/<sha[:2]>/<sha[2:]>
    lines = git("ls-remote", origin.git_url, f"{baseline}/*").splitlines()
    return {line.split()[1].rsplit("/", 1)[1] for line in lines}


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------

def connect(address: str | None) -> None:
    cloudpickle.register_pickle_by_value(sweep_task)  # the nodes need not have the project
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError) as err:
        raise UserError(f"cannot reach a Ray cluster at {address!r}: {str(err).splitlines()[0]} "
                        "(start one with `ray start --head`, see docs/howto/cluster.md)") from err


def describe_cluster(resources: Resources) -> str:
    nodes = [n for n in ray.nodes() if n["Alive"]]
    total = ray.cluster_resources()
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= resources.cpus
            and n["Resources"].get("GPU", 0) >= resources.gpus]
    if not fits:
        log.warning("no node of the cluster has %g CPUs and %g GPUs for one experiment: the tasks "
                    "wait until one joins", resources.cpus, resources.gpus)
    return (f"{len(nodes)} nodes, {total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU; per "
            f"experiment {resources.cpus:g} CPU, {resources.gpus:g} GPU, {resources.threads} PyTorch threads")


def task_spec(exp: Experiment, origin: Origin, resources: Resources) -> dict[str, Any]:
    return {"name": exp.name, "overrides": list(exp.overrides), "targets": list(exp.targets),
            "commit": origin.commit, "ref": experiment_ref(origin.commit, exp.name),
            "git_url": origin.git_url, "dvc_remote": origin.dvc_remote, "threads": resources.threads}


def ray_error(err: Exception) -> str:
    """One line for a task that Ray gave up on (its worker died on every try, or it raised)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


class Board:
    """The state of every experiment of the sweep, and the line printed at each change."""

    def __init__(self, experiments: list[Experiment]) -> None:
        self.experiments = {e.name: e for e in experiments}
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.running: set[str] = set()
        self.attempts: Counter[str] = Counter()

    def counts(self) -> str:
        status = Counter(o["status"] for o in self.outcomes.values())
        queued = len(self.experiments) - len(self.outcomes) - len(self.running)
        return (f"[{status['pushed'] + status['already pushed']} done, {len(self.running)} running, "
                f"{status['failed']} failed, {queued} queued]")

    def started(self, name: str, node: str, pid: int) -> None:
        if name in self.outcomes:
            return
        self.attempts[name] += 1
        self.running.add(name)
        attempt = f" (attempt {self.attempts[name]})" if self.attempts[name] > 1 else ""
        log.info("running %s%s on %s, pid %d: %s %s", name, attempt, node, pid,
                 " ".join(self.experiments[name].overrides), self.counts())

    def ended(self, outcome: dict[str, Any]) -> None:
        name = outcome["name"]
        self.running.discard(name)
        self.outcomes[name] = outcome
        if outcome["status"] == "failed":
            note = ""
            if outcome.get("log"):
                path = LOG_DIR / f"{name}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(outcome["log"] + "\n")
                note = f" (its output: {path})"
            log.error("failed %s: %s%s %s", name, outcome["error"], note, self.counts())
        else:
            log.info("%s %s in %.0f s %s", outcome["status"], name, outcome["seconds"], self.counts())

    def summary(self, unfinished: str = "cancelled") -> str:
        """A table of every experiment: name, result, overrides, error."""
        rows = []
        for name, exp in self.experiments.items():
            outcome = self.outcomes.get(name, {"status": unfinished, "error": ""})
            rows.append({"experiment": name, "result": outcome["status"],
                         "overrides": " ".join(exp.overrides) or "(none)", "error": outcome["error"] or None})
        return markdown_table(rows)


def run_on_cluster(experiments: list[Experiment], origin: Origin, resources: Resources,
                   board: Board) -> bool:
    """Submit every experiment and follow them to the end; False when Ctrl-C cut it short."""
    here = ray.get_runtime_context().get_node_id()
    progress = ray.remote(Progress).options(  # beside the driver, on no CPU
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
    ).remote()
    remote = ray.remote(run_experiment).options(
        num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=resources.retries,
    )
    pending = {remote.remote(task_spec(e, origin, resources), progress): e.name for e in experiments}
    seen = 0

    def collect(refs: list[Any]) -> None:
        for ref in refs:
            name = pending.pop(ref)
            try:
                board.ended(ray.get(ref))
            except ray.exceptions.TaskCancelledError:
                board.running.discard(name)
            except ray.exceptions.RayError as err:
                board.ended({"name": name, "status": "failed", "error": ray_error(err), "seconds": 0.0})

    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
            try:
                for start in ray.get(progress.since.remote(seen), timeout=30):
                    board.started(*start)
                    seen += 1
            except ray.exceptions.RayError:  # progress lost (its node died): the runs go on
                pass
            collect(ready)
        return True
    except KeyboardInterrupt:
        log.warning("interrupted: cancelling %d experiments; each stops its run and removes its clone "
                    "(Ctrl-C again to kill them at once)", len(pending))
        try:
            for ref in pending:
                ray.cancel(ref)
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
            collect(ready)
        except KeyboardInterrupt:
            pass
        for ref in pending:
            ray.cancel(ref, force=True)
        return False


def pull(origin: Origin, names: list[str]) -> None:
    """`dvc exp pull` of the finished experiments: their refs, and their outputs from the DVC remote."""
    if not names:
        return
    remote = ["-r", origin.dvc_remote] if origin.dvc_remote else []
    done = subprocess.run([sys.executable, "-m", "dvc", "exp", "pull", *remote, origin.git_remote, *names],
                          capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"the experiments are on git remote {origin.git_remote!r}, but `dvc exp pull` "
                        f"failed here: {one_line_error(done.stdout + done.stderr)}")
    log.info("pulled %d experiments: dvc exp show lists them", len(names))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="stages to reproduce, as in `dvc exp run` (default: all)")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="[FILE:]KEY=VALUES",
                        help="overrides in the grammar of `dvc exp run --queue -S` (lists, range(...))")
    parser.add_argument("--address", help="the Ray cluster: `auto`, a head's host:port; default: "
                        "$RAY_ADDRESS, else a cluster started on this machine, else a new local one")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs per experiment, and its threads "
                        "(default 1)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per experiment; a fraction shares "
                        "one (default 0)")
    parser.add_argument("--retries", type=int, default=3, help="retries of a task whose worker or node "
                        "dies (default 3)")
    parser.add_argument("--name", default="sweep", help="prefix of the experiment names (default sweep)")
    parser.add_argument("--git-remote", default="origin", help="git remote every node clones from and "
                        "pushes to (default origin)")
    parser.add_argument("--dvc-remote", help="DVC remote for the outputs (default: the committed default)")
    parser.add_argument("--dry", action="store_true", help="list the experiments and which are already "
                        "pushed; run nothing")
    args = parser.parse_args(argv)
    if args.cpus <= 0 or args.retries < 0:
        raise UserError(f"--cpus {args.cpus:g}, --retries {args.retries}: expected CPUs > 0 and retries >= 0")
    if args.gpus < 0 or (args.gpus > 1 and not args.gpus.is_integer()):
        raise UserError(f"--gpus {args.gpus:g}: expected a fraction below 1 (runs sharing a GPU) "
                        "or a whole number of GPUs")

    os.chdir(git("rev-parse", "--show-toplevel"))
    experiments = plan(args.set_param, args.name, tuple(args.targets))
    origin = check_project(args.git_remote, args.dvc_remote)
    pushed = pushed_names(origin)
    board = Board(experiments)
    for exp in experiments:
        if exp.name in pushed:
            board.outcomes[exp.name] = {"name": exp.name, "status": "already pushed", "error": ""}
    todo = [e for e in experiments if e.name not in pushed]
    log.info("sweep of %d experiments at commit %s: %d already pushed to %s, %d to run",
             len(experiments), origin.commit[:7], len(pushed & set(board.experiments)),
             origin.git_remote, len(todo))
    if args.dry:
        sys.stdout.write(board.summary(unfinished="to run"))
        return

    resources = Resources(args.cpus, args.gpus, args.retries)
    completed = True
    if todo:
        connect(args.address)
        log.info("Ray cluster: %s", describe_cluster(resources))
        completed = run_on_cluster(todo, origin, resources, board)
    pull(origin, [n for n, o in board.outcomes.items() if o["status"] != "failed"])
    sys.stdout.write(board.summary())
    if not completed:
        sys.exit(EXIT_INTERRUPTED)
    if any(o["status"] == "failed" for o in board.outcomes.values()):
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    # The sweep handles Ctrl-C itself (it cancels its tasks and pulls what finished), so it
    # takes back Python's KeyboardInterrupt from the scripts package's one-line exit.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_main(main)

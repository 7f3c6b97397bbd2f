"""Compare the workspace run with a git revision: the Markdown report of a pull request.

    python -m scripts.review --rev main      # writes reports/review.md, reports/review_plots/

The report leads with the primary score's ROC-AUC, PR-AUC, F1 and flagged count, old → new,
each marked better or worse; then `dvc metrics diff` (the metrics of dvc.yaml, and those of
reports/detail.json and reports/train_metrics.json) and `dvc params diff` against the
revision, and a link to the page of `dvc plots diff` (the ROC, precision-recall, loss and KL
curves of both, overlaid; it opens offline, see scripts/report.py). Where vega-lite's
`vl2png` (or `vl2svg`) is on PATH, as in the pull-request workflow
(.github/workflows/review.yml), each curve is also drawn to an image shown in the report,
which `cml comment create` uploads with it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dvc.api
import yaml
from tabulate import tabulate

from scripts.report import run_dvc, stale_stages, stale_warning, write_plots_page
from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path
from vae_anomaly.params import resolve_auto

OUT = "reports/review.md"
PLOTS_DIR = "reports/review_plots"
METRICS = "reports/metrics.json"
# Metrics kept out of dvc.yaml's `metrics:` (so `dvc exp show` stays narrow) that a review
# compares too: the primary score's precision, recall and counts, every score's and
# baseline's ROC-AUC and PR-AUC, reconstruction, latent; the training run.
DETAIL = "reports/detail.json"
TRAIN_METRICS = "reports/train_metrics.json"
# The headline of reports/metrics.json: (key, label, whether higher is better; None: neither).
HEADLINE = (("roc_auc", "ROC-AUC", True), ("pr_auc", "PR-AUC", True), ("f1", "F1", True),
            ("n_flagged", "flagged", None))


def resolve_commit(rev: str) -> str:
    """The commit ``rev`` names, or a UserError that says how to get one."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise UserError(
            f"git revision {rev!r} not found here; pass a branch, tag or commit that exists "
            "(`git branch -a` lists branches; in a shallow CI checkout fetch it first, "
            f"e.g. `git fetch origin {rev}`)"
        )
    return done.stdout.strip()


def run_summary(rev: str | None) -> tuple[dict[str, Any], str | None]:
    """reports/metrics.json and score.primary at ``rev`` (None: the workspace); ({}, None)
    where the revision has no such file."""
    try:
        metrics = dvc.api.metrics_show(METRICS, rev=rev)
    except FileNotFoundError:
        metrics = {}
    try:
        params = dvc.api.params_show(rev=rev)
    except Exception:  # no params.yaml, or one DVC cannot read: the headline says "?"
        return metrics, None
    try:
        params = resolve_auto(params)  # score.primary "auto" is the score that was thresholded
    except (KeyError, TypeError):  # a revision's params from before "auto": as they are
        pass
    return metrics, params.get("score", {}).get("primary")


def change(old: Any, new: Any, higher_is_better: bool | None) -> str:
    """``new - old`` and whether that is better or worse; "" where either is not a number."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new)):
        return ""
    delta = new - old
    text = f"{delta:+.3g}" if isinstance(delta, float) else f"{delta:+d}"
    if delta == 0:
        return "unchanged"
    if higher_is_better is None:
        return text
    return f"{text} ({'better' if (delta > 0) == higher_is_better else 'worse'})"


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def headline_markdown(rev: str, old: dict[str, Any], new: dict[str, Any],
                      old_primary: str | None, new_primary: str | None) -> list[str]:
    """The primary metric old → new in bold, then the headline metrics as a table."""
    if old_primary == new_primary:
        score = f"`{new_primary}`"
    else:  # not the same score: the comparison says so rather than hide it
        score = f"score.primary (`{old_primary}` at `{rev}`, `{new_primary}` here)"
    key, label, higher = HEADLINE[0]
    moved = change(old.get(key), new.get(key), higher)
    lines = [f"**{label} of {score}: {_fmt(old.get(key))} → {_fmt(new.get(key))}"
             + (f", {moved}" if moved else "") + "**", ""]
    rows = [[name, _fmt(old.get(k)), _fmt(new.get(k)), change(old.get(k), new.get(k), up)]
            for k, name, up in HEADLINE]
    table = tabulate(rows, ["metric", f"`{rev}`", "workspace", "change"], tablefmt="github",
                     disable_numparse=True)
    return [*lines, table]


def diff_section(kind: str, rev: str) -> str:
    """`dvc metrics diff` (of compared_metrics) or `dvc params diff` against ``rev`` as one
    Markdown table, or a one-liner."""
    targets = ("--targets", *compared_metrics()) if kind == "metrics" else ()
    table = run_dvc(kind, "diff", rev, *targets, "--md").strip().splitlines()
    if len(table) <= 2:  # DVC prints the header alone when nothing differs
        return f"No {'metric' if kind == 'metrics' else 'param'} differs from `{rev}`."
    return "\n".join(table)


def compared_metrics(dvc_yaml: str | Path = "dvc.yaml") -> list[str]:
    """The metrics files of the workspace's dvc.yaml, then DETAIL and TRAIN_METRICS. Named, so
    that both revisions are compared file by file as this dvc.yaml lists them, not each by its
    own dvc.yaml: a file one revision did not list would show as removed, its values unseen."""
    listed = yaml.safe_load(Path(dvc_yaml).read_text()).get("metrics", [])
    return list(dict.fromkeys([*listed, DETAIL, TRAIN_METRICS]))


def failed_baselines(detail_path: str | Path = DETAIL) -> str:
    """The baselines that failed in the workspace run, with their errors, as one line; "" when
    none failed or there are no metrics. `dvc metrics diff` shows a failure only when it is new."""
    path = Path(detail_path)
    if not path.is_file():
        return ""
    baselines = json.loads(path.read_text()).get("baselines", {})
    failed = [f"`{name}` ({m['error']})" for name, m in baselines.items() if "error" in m]
    return "; ".join(failed)


def curve_images(rev: str, plots_dir: Path) -> list[tuple[str, Path]]:
    """Each curve of `dvc plots diff REV` drawn to an image, where vega-lite's CLI is here.

    `vl2png` needs node-canvas; where it fails, `vl2svg` (which does not) is tried.
    """
    converters = [path for path in map(shutil.which, ("vl2png", "vl2svg")) if path]
    if not converters:
        return []
    plots = json.loads(run_dvc("plots", "diff", rev, "--json")).get("data", {})
    images = []
    for name, renders in plots.items():
        for render in (r for r in renders if r.get("type") == "vega"):  # PNG figures: on the page
            spec = plots_dir / (re.sub(r"[^\w-]+", "_", name).strip("_") + ".vl.json")
            with atomic_path(spec) as tmp:
                tmp.write_text(json.dumps(render["content"]))
            while converters:
                image = _draw(converters[0], spec)
                if image:
                    images.append((name, image))
                    break
                converters.pop(0)
    return images


def _draw(converter: str, spec: Path) -> Path | None:
    """``spec`` drawn beside it by ``converter`` (vl2png, vl2svg); None if that failed."""
    tool = Path(converter).name
    image = spec.with_name(spec.name.removesuffix(".vl.json") + "." + tool[-3:])
    done = subprocess.run([converter, str(spec), str(image)], capture_output=True, text=True)
    if done.returncode == 0 and image.is_file():
        return image
    errors = [line.strip() for line in done.stderr.splitlines() if "Error" in line]
    print(f"warning: {tool} could not draw {spec.name} "
          f"({(errors or [f'exit {done.returncode}'])[0]}); not using it", file=sys.stderr)
    return None


def review_markdown(rev: str, commit: str, out: Path, plots_dir: Path) -> str:
    warning = stale_warning(stale_stages())
    failed = failed_baselines()
    page = write_plots_page(plots_dir, f"Review: {rev} vs workspace", "", diff_rev=rev)
    link = Path(os.path.relpath(page, out.parent)).as_posix()
    (old, old_primary), (new, new_primary) = run_summary(commit), run_summary(None)
    lines = [
        f"## Review: workspace vs `{rev}` ({commit[:7]})",
        "",
        *([f"> **Warning:** {warning}", ""] if warning else []),
        *([f"> **Failed baselines** (no scores, left out of the comparison): {failed}", ""] if failed else []),
        *headline_markdown(rev, old, new, old_primary, new_primary),
        "",
        "### All metrics",
        "",
        diff_section("metrics", rev),
        "",
        "### Params",
        "",
        diff_section("params", rev),
        "",
        "### Plots",
        "",
        f"ROC, precision-recall, loss and KL curves of `{rev}` and the workspace, overlaid, "
        f"and the figures of both: [{link}]({link}) (opens offline).",
    ]
    for name, image in curve_images(rev, plots_dir):
        lines += ["", f"![{name}]({Path(os.path.relpath(image, out.parent)).as_posix()})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", required=True,
                        help="git revision to compare with: branch, tag or commit (e.g. main)")
    parser.add_argument("--out", default=OUT, help=f"Markdown report (default {OUT})")
    parser.add_argument("--plots-dir", default=PLOTS_DIR,
                        help=f"folder for the plots page and images (default {PLOTS_DIR})")
    args = parser.parse_args(argv)
    commit = resolve_commit(args.rev)
    out, plots_dir = Path(args.out), Path(args.plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    markdown = review_markdown(args.rev, commit, out, plots_dir)
    with atomic_path(out) as tmp:
        tmp.write_text(markdown)
    print(f"wrote {out} and {plots_dir}/index.html")


if __name__ == "__main__":
    run_main(main)

"""Compare the workspace run with a git revision: the Markdown report of a pull request.

    python -m scripts.review --rev main      # writes reports/review.md, reports/review_plots/

The report holds `dvc metrics diff` and `dvc params diff` against the revision, and links the
page of `dvc plots diff` (the ROC, precision-recall, loss and KL curves of both, overlaid;
it opens offline, see scripts/report.py). Where vega-lite's `vl2png` (or `vl2svg`) is on
PATH, as in the pull-request workflow (.github/workflows/review.yml), each curve is also
drawn to an image shown in the report, which `cml comment create` uploads with it.
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

from scripts.report import (
    ScriptError, run_dvc, run_script, stale_stages, stale_warning, write_plots_page,
)

OUT = "reports/review.md"
PLOTS_DIR = "reports/review_plots"
METRICS = "reports/metrics.json"


def resolve_commit(rev: str) -> str:
    """The commit ``rev`` names, or a ScriptError that says how to get one."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise ScriptError(
            f"git revision {rev!r} not found here; pass a branch, tag or commit that exists "
            "(`git branch -a` lists branches; in a shallow CI checkout fetch it first, "
            f"e.g. `git fetch origin {rev}`)"
        )
    return done.stdout.strip()


def diff_section(kind: str, rev: str) -> str:
    """`dvc metrics diff` or `dvc params diff` against ``rev`` as Markdown, or a one-liner."""
    table = run_dvc(kind, "diff", rev, "--md").strip()
    if len(table.splitlines()) <= 2:  # DVC prints the header alone when nothing differs
        return f"No {'metric' if kind == 'metrics' else 'param'} differs from `{rev}`."
    return table


def failed_baselines(metrics_path: str | Path = METRICS) -> str:
    """The baselines that failed in the workspace run, with their errors, as one line; "" when
    none failed or there are no metrics. `dvc metrics diff` shows a failure only when it is new."""
    path = Path(metrics_path)
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
            spec.write_text(json.dumps(render["content"]))
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
    lines = [
        f"## Review: workspace vs `{rev}` ({commit[:7]})",
        "",
        *([f"> **Warning:** {warning}", ""] if warning else []),
        *([f"> **Failed baselines** (no scores, left out of the comparison): {failed}", ""] if failed else []),
        "### Metrics",
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
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    print(f"wrote {out} and {plots_dir}/index.html")


if __name__ == "__main__":
    run_script(main)

"""One HTML page with every plot and metric of the workspace run; it opens offline.

    python -m scripts.report                 # writes reports/report/index.html

The plots are those of `dvc.yaml` (ROC, precision-recall, loss and KL curves, and the PNG
figures), drawn by `dvc plots show`; above them, the metrics of `dvc metrics show` as tables
and the params of the run. DVC's own page loads Vega from a CDN; this one is filled into a
`--html-template` that carries Vega inline (scripts/vendor/vega, the builds DVC links), so
it needs no network. `scripts/review.py` makes its `dvc plots diff` page the same way.
"""
from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import dvc.api
import yaml
from tabulate import tabulate

from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError
from vae_anomaly.io import atomic_path

VEGA_DIR = Path(__file__).resolve().parent / "vendor" / "vega"
VEGA_SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")  # embed needs the others
OUT_DIR = "reports/report"

STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: 0.5em 1em; }
"""


def run_dvc(*args: str) -> str:
    """Run this interpreter's DVC with ``args``; return its stdout, or raise with its error."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-1:]
        error = errors[0] if errors else ""
        raise UserError(f"`dvc {' '.join(args)}` failed (exit {done.returncode}): {error}")
    return done.stdout


def stale_stages() -> list[str]:
    """Stages whose inputs changed since their last run (`dvc status`); [] when up to date."""
    return sorted(json.loads(run_dvc("status", "--json") or "{}"))


def stale_warning(stages: list[str]) -> str:
    return (
        f"`dvc status`: {', '.join(stages)} changed since the last run, so what follows is of "
        "the last run, not of the workspace as it is; run `dvc repro` first"
    ) if stages else ""


def offline_template(title: str, header_html: str) -> str:
    """A template for `dvc plots --html-template`: Vega inline, ``header_html`` above the plots.

    It has no `{scripts}` placeholder, so DVC adds no CDN links; `{plot_divs}` is where DVC
    puts the plots.
    """
    scripts = "\n".join(
        f"<script>/* {name}, see scripts/vendor/vega */\n{(VEGA_DIR / name).read_text()}\n</script>"
        for name in VEGA_SCRIPTS
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n{scripts}\n</head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n"
        f"{header_html}\n<h2>Plots</h2>\n{{plot_divs}}\n</body>\n</html>\n"
    )


def write_plots_page(
    out_dir: str | Path, title: str, header_html: str, diff_rev: str | None = None
) -> Path:
    """DVC's plots page, offline: `dvc plots show`, or `dvc plots diff REV` (REV vs workspace).

    DVC writes the page into a scratch folder beside ``out_dir``; each file is then moved into
    ``out_dir`` atomically, index.html last, so an interrupted run never leaves a page that
    points at missing or half-written images.
    """
    out_dir = Path(out_dir)
    command = ["plots", "diff", diff_rev] if diff_rev else ["plots", "show"]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        template, rendered = Path(tmp) / "template.html", Path(tmp) / "page"
        template.write_text(offline_template(title, header_html), encoding="utf-8")
        run_dvc(*command, "-o", str(rendered), "--html-template", str(template))
        files = sorted((p for p in rendered.rglob("*") if p.is_file()), key=lambda p: p.name == "index.html")
        for source in files:
            with atomic_path(out_dir / source.relative_to(rendered)) as target:
                shutil.copyfile(source, target)
    return out_dir / "index.html"


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    """An HTML table (tabulate escapes every cell); numbers to 4 significant digits."""
    cells = [[f"{c:.4g}" if isinstance(c, float) else "" if c is None else str(c) for c in row]
             for row in rows]
    return tabulate(cells, header, tablefmt="html", disable_numparse=True)


def _flatten(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def metrics_tables(metrics: dict) -> str:
    """One metrics file as tables: its scalars as key | value, and each mapping of mappings
    (one row per anomaly type, per score) as a grid."""
    scalars, parts = {}, []
    for key, value in metrics.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            columns = sorted({c for row in value.values() for c in row})
            rows = [[name, *(row.get(c, "") for c in columns)] for name, row in value.items()]
            parts.append(html_table([key, *columns], rows))
        else:
            scalars[key] = value
    table = html_table(["metric", "value"], [list(r) for r in _flatten(scalars)]) if scalars else ""
    return table + "".join(parts)


# The metrics of `dvc metrics show`, then the JSON reports kept out of `dvc exp show`; a
# report that is one row per name (per anomaly kind) is drawn as one grid, its rows named so.
METRICS_SECTIONS = (
    ("Metrics", (), None),
    ("Training run", ("reports/train_metrics.json",), None),
    ("Primary score at the threshold, every score and baseline, reconstruction, latent",
     ("reports/detail.json",), None),
    ("Per anomaly type", ("reports/per_type.json",), "anomaly kind"),
    ("Data", ("reports/data_summary.json",), None),
    ("Baselines: rows, adaptations, failures", ("reports/baselines.json",), None),
)


def metrics_html() -> str:
    """The workspace's metrics and per-type and data reports, one section each."""
    parts = []
    for title, targets, rows in METRICS_SECTIONS:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        try:
            shown = dvc.api.metrics_show(*targets)
            parts.append(metrics_tables({rows: shown} if rows else shown))
        except Exception as err:  # a missing or broken file: say so and show the rest
            parts.append(f"<p>No {html.escape(', '.join(targets) or 'metrics')} yet "
                         f"({html.escape(type(err).__name__)}): run <code>dvc repro</code>.</p>")
    return "\n".join(parts)


def params_html(path: str = "params.yaml") -> str:
    rows = _flatten(yaml.safe_load(Path(path).read_text()) or {})
    return (
        f"<details><summary>{len(rows)} params from {html.escape(path)}</summary>"
        + html_table(["param", "value"], [[k, json.dumps(v) if isinstance(v, (list, str)) else v]
                                           for k, v in rows])
        + "</details>"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=OUT_DIR, help=f"folder for index.html (default {OUT_DIR})")
    args = parser.parse_args(argv)
    warning = stale_warning(stale_stages())
    header = (
        (f'<p class="warning">{html.escape(warning)}</p>\n' if warning else "")
        + f"<h2>Metrics</h2>\n{metrics_html()}\n<h2>Params</h2>\n{params_html()}"
    )
    page = write_plots_page(args.out, "Workspace run: metrics and plots", header)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {page} (opens offline)")


if __name__ == "__main__":
    run_main(main)

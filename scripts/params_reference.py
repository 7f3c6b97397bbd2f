"""docs/params.md, written from the params schema (vae_anomaly/params.py), so the page cannot
drift from what validation accepts.

    python -m scripts.params_reference           # rewrites docs/params.md
    python -m scripts.params_reference --check   # exits 1 if docs/params.md differs

Each key's row is its spec: the default, what is allowed and its ``doc``; the scores' table is
the registry's (vae_anomaly/scoring/registry.py); what ``auto`` becomes is resolved by the
function the stages call. tests/test_params_reference.py fails when the page is stale or a key
has no doc.
"""
from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vae_anomaly.cli import run_main
from vae_anomaly.io import write_bytes
from vae_anomaly.params import AUTO, SCHEMA, SCORES as SCORE_NAMES, Choice, default_params, resolve_sections
from vae_anomaly.scoring.registry import SCORES

PAGE = Path(__file__).resolve().parent.parent / "docs" / "params.md"

INTRO = """\
# Params

Every key of `params.yaml`: its default (the project's `params.yaml`), what is allowed and what
it does. This page is written from the schema in `vae_anomaly/params.py` by
`python -m scripts.params_reference`; edit the schema's `doc` texts, not this page. The data
sources in detail: [data.md](data.md); what each output file holds: [outputs.md](outputs.md).
Back to the [docs index](README.md).

Each stage declares in `dvc.yaml` only the keys it reads, so changing `model.beta` re-runs
`train` and what follows, never `prepare`. Every key is validated before a stage starts; a bad
one stops it with a line that names the key and what is allowed, e.g.

    model.beta = -1 is not allowed; expected a number >= 0
    unknown key 'model.bta'; allowed keys here: model.kind, model.architecture, ...

Rules across keys are checked too (a KL schedule that never reaches full β, a score the model
cannot give, `data.classes` against `data.protocol`). The file is written the way
`dvc exp run -S` rewrites it (lists one item per line, `''` for empty text), so the diff of an
experiment's `params.yaml` is its change and nothing else; `tests/test_params.py` checks it.
"""

AUTO_TEXT = """\
## `auto`

Six keys default to `auto`, which each stage resolves from `data.source` (tables or images)
and `data.protocol` before it starts (`vae_anomaly.params.resolve_auto`), so that
`dvc exp run -S data.source=fashion_mnist -S data.protocol=one_class -S 'data.classes=[3]'`
trains and scores the recommended image detector; the detection suite chose each value
([suite.md](suite.md)). A key set by hand stays as set, and the scores follow the model that
results. The stages log what they resolved. A `Detector` resolves `auto` when `fit` sees the
data: a table, or images as for `data.protocol: one_class`.
"""

# The data kinds `auto` tells apart: (heading, images, data.protocol).
AUTO_CASES = (("tables", False, "held_out"), ("images, `held_out`", True, "held_out"),
              ("images, `one_class` or `plain`", True, "one_class"))


def leaves(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key of ``schema`` that holds a value, dotted, with its spec, in schema order."""
    for name, spec in schema.items():
        if isinstance(spec, dict):
            yield from leaves(spec, f"{prefix}{name}.")
        else:
            yield prefix + name, spec


def undocumented(schema: dict[str, Any] = SCHEMA) -> list[str]:
    """The keys whose spec has no doc text."""
    return [key for key, spec in leaves(schema) if not spec.doc.strip()]


def flow(value: Any) -> str:
    """``value`` as YAML's flow style writes it: `[1, 2]`, `{kind: x}`, `''`, `true`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {flow(v)}" for k, v in value.items()) + "}"
    return repr(value)


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def allowed(spec: Any) -> str:
    """What ``spec`` allows, as its error message says it, the score names as a link to their table."""
    return spec.allowed().replace(Choice(SCORE_NAMES).allowed(), "one of the [scores](#scores)")


def key_tables(schema: dict[str, Any] = SCHEMA) -> str:
    defaults = default_params(schema)
    parts = []
    for section in schema:
        rows = ["| key | default | allowed | what |", "| --- | --- | --- | --- |"]
        for key, spec in leaves(schema[section], section + "."):
            value = defaults
            for part in key.split("."):
                value = value[part]
            rows.append(f"| `{key}` | `{cell(flow(value))}` | {cell(allowed(spec))} | {cell(spec.doc)} |")
        parts.append(f"## {section}\n\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


def score_table() -> str:
    needs = {"vae": "`model.kind: vae`", "images": "images", "reference": "the training reference",
             "code_length": "`model.likelihood: discretized_logistic`"}
    rows = ["| score | what | needs |", "| --- | --- | --- |"]
    for name, score in SCORES.items():
        wanted = ", ".join(text for need, text in needs.items() if getattr(score, need))
        rows.append(f"| `{name}` | {cell(score.what)} | {wanted} |")
    return ("## Scores\n\nWhat `score.names`, `score.primary` and `score.combine` name: per sample,\n"
            "higher = more anomalous (`vae_anomaly/scoring/registry.py`).\n\n" + "\n".join(rows) + "\n")


def auto_table() -> str:
    defaults = default_params()
    keys = [("model", k) for k, v in defaults["model"].items() if v == AUTO]
    keys += [("score", k) for k, v in defaults["score"].items() if v == AUTO]
    rows = ["| key | " + " | ".join(case for case, _, _ in AUTO_CASES) + " |",
            "| --- |" + " --- |" * len(AUTO_CASES)]
    resolved = []
    for _, images, protocol in AUTO_CASES:
        model, score = copy.deepcopy(defaults["model"]), copy.deepcopy(defaults["score"])
        resolve_sections(model, score, images, protocol)
        resolved.append({"model": model, "score": score})
    for section, key in keys:
        rows.append(f"| `{section}.{key}` | " + " | ".join(f"`{flow(r[section][key])}`" for r in resolved) + " |")
    return AUTO_TEXT + "\n" + "\n".join(rows) + "\n"


def page() -> str:
    """The text of docs/params.md."""
    return "\n".join((INTRO, key_tables(), score_table(), auto_table()))


def main(argv: list[str] | None = None, path: Path = PAGE) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page differs; write nothing")
    args = parser.parse_args(argv)
    text = page()
    if args.check:
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if old != text:
            sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                       str(path), "generated", n=1))
            sys.stderr.write(f"{path} is stale: run `python -m scripts.params_reference`\n")
            sys.exit(1)
        return
    write_bytes(path, text.encode("utf-8"))


if __name__ == "__main__":
    run_main(main)

"""What the levers benchmarks (one_class_levers, table_levers) share: the suite's cached VAE of a
task and seed, and their report, one table of mean development ROC-AUC per section."""
from __future__ import annotations

import logging
from pathlib import Path

from vae_anomaly.io import atomic_path
from vae_anomaly.studies import suite as S

log = logging.getLogger(__name__)

CACHE = Path("data/suite_cache")


def model_path(task: S.Task, seed: int, data: S.Prepared, cache: Path = CACHE) -> Path:
    """Where the suite caches the weights of ``task``'s VAE trained with ``seed`` on ``data``."""
    return cache / f"{task.name.replace('/', '__')}-model-{seed}-{S.model_key(task, seed, S.data_digest(data))}.pt"


def section(title: str, means: dict[str, float]) -> list[str]:
    """A report section: each candidate's mean development ROC-AUC, best first."""
    return [f"## {title}", "", "| score | mean ROC-AUC |", "| --- | --- |",
            *(f"| {name} | {value:.4f} |" for name, value in sorted(means.items(), key=lambda kv: -kv[1])), ""]


def write_report(lines: list[str], output: Path) -> None:
    """Write the report's ``lines`` to ``output`` (whole or not at all) and print them."""
    with atomic_path(output) as tmp:
        tmp.write_text("\n".join(lines))
    log.info("wrote %s", output)
    print("\n".join(lines))

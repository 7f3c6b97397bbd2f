"""The training log: each epoch's losses and KL weight written with DVCLive as the epoch ends,
so `dvc exp show`, `dvc plots` and the VS Code extension follow a run while it trains; read
back by the plot stage."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..io import read_csv

# The columns of training.fit's history rows, each under its DVCLive name: DVCLive's "split/
# quantity" convention keeps them apart from reports/train_metrics.json's val_loss (the best
# epoch's). The epoch (1, 2, ...) is DVCLive's step.
EPOCH_METRICS = {
    "kl_weight": "kl_weight",
    "train_loss": "train/loss", "train_recon": "train/recon", "train_kl": "train/kl",
    "val_loss": "val/loss", "val_recon": "val/recon", "val_kl": "val/kl",
}


@contextlib.contextmanager
def epoch_log(folder: str | Path) -> Iterator[Callable[[dict[str, float]], None]]:
    """A callback for ``training.fit(on_epoch=...)`` that logs each epoch with DVCLive into
    ``folder``: ``plots/metrics/<name>.tsv`` gains a row (step = epoch) and ``metrics.json``
    holds the latest epoch's losses, as each epoch ends.

    DVCLive's options keep the files byte-identical from run to run and the stage its own:
    no timestamps (log_metric's default), no HTML report, no dvc.yaml of its own (dvc.yaml
    declares the files), no experiment saved (the pipeline's run is the experiment). It
    posts to DVC Studio only where the user configured a Studio token; DVC_STUDIO_OFFLINE=true
    stops that (the tests set it)."""
    from dvclive import Live  # imports DVC: only the train stage pays for it

    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None) as live:

        def log_epoch(row: dict[str, float]) -> None:
            live.step = int(row["epoch"])
            for column, name in EPOCH_METRICS.items():
                live.log_metric(name, row[column])
            # Live.summary (metrics.json) may be set by hand, DVCLive's docs say. Each of its
            # keys is a column of `dvc exp show`, so it holds the losses alone (and DVCLive's
            # step); the KL, its weight and the reconstruction term are in the plots.
            live.summary = {"train": {"loss": row["train_loss"]}, "val": {"loss": row["val_loss"]}}
            live.next_step()

        yield log_epoch


def read_history(folder: str | Path) -> dict[str, np.ndarray]:
    """The log of :func:`epoch_log` as history columns: ``epoch`` and each of EPOCH_METRICS."""
    history: dict[str, np.ndarray] = {}
    for column, name in EPOCH_METRICS.items():
        table = read_csv(Path(folder) / "plots" / "metrics" / f"{name}.tsv", delimiter="\t")
        history.setdefault("epoch", table["step"])
        history[column] = table[Path(name).name]  # DVCLive's column: the name's last part
    return history

"""Sizing each step to the data it is given: the fewest rows a run accepts, and the
adaptations a small table needs (a batch size capped at the rows, KNN's k below them, a
validation split raised to its minimum).

Each adaptation is logged once and recorded as ``{param: {"asked", "used", "why"}}`` in the
metrics JSON of the stage that made it, so a small table's run says what it changed.
"""
from __future__ import annotations

import logging
from typing import Any

from ..errors import UserError

log = logging.getLogger(__name__)

# Early stopping and the default threshold (mean + k * std, threshold.split: val) are fitted
# on the validation scores; fewer than 10 give a standard deviation too rough to set either.
MIN_VAL_ROWS = 10
# The training split's mean and std scale every split; 10 rows is the least we scale by.
MIN_TRAIN_ROWS = 10

Adaptations = dict[str, dict[str, Any]]


def adaptation(param: str, asked: Any, used: Any, why: str) -> Adaptations:
    """The record of one adaptation, logged as one line."""
    log.warning("%s: asked %s, used %s: %s", param, asked, used, why)
    return {param: {"asked": asked, "used": used, "why": why}}


def capped_batch_size(param: str, asked: int, n_rows: int) -> tuple[int, Adaptations]:
    """A batch size of at most ``n_rows``: one full batch per epoch rather than none (PyOD's
    deep detectors drop an incomplete last batch, so a larger batch would never train)."""
    if asked <= n_rows:
        return asked, {}
    return n_rows, adaptation(param, asked, n_rows, f"only {n_rows} training rows")


def neighbors_below(param: str, asked: int, n_rows: int) -> tuple[int, Adaptations]:
    """KNN's k for ``n_rows`` training rows: each row's neighbours exclude itself, so k < n_rows."""
    if asked < n_rows:
        return asked, {}
    used = n_rows - 1
    return used, adaptation(param, asked, used, f"only {n_rows} training rows; k must be below that")


def validation_rows(n: int, val_fraction: float, rows_from: str, to_change: str) -> tuple[int, Adaptations]:
    """How many of ``n`` rows to keep for validation: ``val_fraction`` of them, at least
    MIN_VAL_ROWS, leaving at least MIN_TRAIN_ROWS for training.

    Fewer than MIN_TRAIN_ROWS + MIN_VAL_ROWS rows raise a UserError that says where the rows
    came from (``rows_from``) and what to change (``to_change``)."""
    needed = MIN_TRAIN_ROWS + MIN_VAL_ROWS
    if n < needed:
        raise UserError(
            f"{rows_from} gives {n} rows for training and validation; at least {needed} are "
            f"needed ({MIN_TRAIN_ROWS} training + {MIN_VAL_ROWS} validation): {to_change}"
        )
    asked = round(val_fraction * n)
    if asked >= MIN_VAL_ROWS:
        return asked, {}  # val_fraction <= 0.5 (params), so training keeps >= MIN_TRAIN_ROWS
    return MIN_VAL_ROWS, adaptation(
        "data.val_fraction", asked, MIN_VAL_ROWS,
        f"{val_fraction:g} of {n} rows gives {asked}, below the minimum of {MIN_VAL_ROWS} validation rows",
    )

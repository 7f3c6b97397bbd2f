"""A table's columns as the model reads them: each number standardised with the training rows'
mean and std, each category one-hot over the categories seen in training, a missing entry as
NaN (left out of the likelihood, model/likelihoods.py), an unseen category as a block of zeros
(scored as the column's least likely category). Inferred from the training table, saved as
plain JSON (in prepare's features.npz and a detector's detector.json), applied again to new rows with columns matched by name.

Column kinds: numbers are ``numeric`` unless named in ``categorical``; text, booleans and
pandas categories are ``categorical``. Categories are compared as text ("3" and 3 are one).
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, UserError
from ..io import read_arrays

log = logging.getLogger(__name__)

NUMERIC, CATEGORICAL = "numeric", "categorical"
# A categorical column with more distinct values than this share of the training rows (and
# at least MIN_ID_VALUES of them) is an identifier, not a category: every new row's value
# would be unseen.
ID_SHARE, MIN_ID_VALUES = 0.5, 50
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Column:
    name: str
    kind: str  # NUMERIC or CATEGORICAL
    mean: float = 0.0  # numeric: the training rows' mean and std (1 where the std is 0)
    std: float = 1.0
    categories: list[str] = field(default_factory=list)  # categorical: sorted, as text

    @property
    def width(self) -> int:
        """Model inputs the column takes: 1 for a number, one per category."""
        return 1 if self.kind == NUMERIC else len(self.categories)


@dataclass
class Encoded:
    """Rows as the model takes them: float32 (N, width of all columns), NaN where missing;
    and, per categorical column, how many rows held a category unseen in training."""

    x: np.ndarray
    unseen: dict[str, int]


@dataclass
class ColumnEncoding:
    columns: list[Column]
    ignored: list[str] = field(default_factory=list)  # dropped by name wherever they appear (ids, labels)
    # Whether the columns have names of their own (a table's header), else they were an
    # array's (x0, x1, ...) and a table of new rows is read by position.
    named: bool = True

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit_array(cls, x: np.ndarray, names: list[str] | None = None) -> ColumnEncoding:
        """Numeric columns of the training array ``x`` (N, D), named ``names`` (default x0, x1, ...)."""
        mean, std = _mean_std(np.asarray(x, dtype=np.float64))
        columns = [Column(str(n), NUMERIC, float(m), float(s))
                   for n, m, s in zip(names or [f"x{j}" for j in range(x.shape[1])], mean, std)]
        return cls(columns, named=False)

    @classmethod
    def fit(cls, frame: Any, categorical: list[str] = (), ignored: list[str] = (),
            where: str = "the training rows") -> ColumnEncoding:
        """The columns of the pandas DataFrame ``frame`` (the training rows), their kinds
        inferred or, for ``categorical``, given; ``ignored`` columns are left out here and
        wherever they appear later. ``where`` names the rows in errors."""
        import pandas as pd

        names = [str(c) for c in frame.columns]
        unknown = [c for c in categorical if c not in names]
        if unknown:
            raise UserError(f"data.file.categorical names {unknown[0]!r}, which is not a column of {where} "
                            f"(its columns: {', '.join(names)})")
        columns = []
        for name, label in zip(names, frame.columns):
            if name in ignored:
                continue
            values = frame[label]
            if values.isna().all():
                raise UserError(f"column {name!r} of {where} holds no value; leave it out (data.file.drop_columns)")
            if name in categorical or not _is_number(values):
                categories = sorted(set(_as_text(values.dropna())))
                if len(categories) > max(MIN_ID_VALUES, ID_SHARE * values.notna().sum()):
                    raise UserError(
                        f"column {name!r} of {where} has {len(categories)} distinct values in "
                        f"{int(values.notna().sum())} rows: an identifier, not a category; leave it out "
                        "(data.file.drop_columns)")
                columns.append(Column(name, CATEGORICAL, categories=categories))
            else:
                mean, std = _mean_std(pd.to_numeric(values).to_numpy(dtype=np.float64)[:, None])
                columns.append(Column(name, NUMERIC, float(mean[0]), float(std[0])))
        if not columns:
            raise UserError(f"{where} have no column to learn from, only ignored ones ({', '.join(ignored)})")
        encoding = cls(columns, list(ignored))
        log.info("columns: %s", encoding.describe())
        return encoding

    # ------------------------------------------------------------------ layout
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def categorical_blocks(self) -> list[list[int]]:
        """[start, width] of each categorical column's one-hot block in the model's input."""
        blocks, start = [], 0
        for column in self.columns:
            if column.kind == CATEGORICAL:
                blocks.append([start, column.width])
            start += column.width
        return blocks

    def feature_column(self) -> np.ndarray:
        """For each model input, the index of the column it belongs to."""
        return np.repeat(np.arange(len(self.columns)), [c.width for c in self.columns])

    def group(self, values: np.ndarray) -> np.ndarray:
        """Per-input ``values`` (N, width) summed per column (N, columns): a category's block as one."""
        out = np.zeros((len(values), len(self.columns)))
        np.add.at(out.T, self.feature_column(), np.asarray(values, dtype=np.float64).T)
        return out

    def describe(self) -> str:
        kinds = [f"{c.name} ({c.kind}{'' if c.kind == NUMERIC else f', {c.width} categories'})" for c in self.columns]
        return ", ".join(kinds) + (f"; ignored: {', '.join(self.ignored)}" if self.ignored else "")

    # ------------------------------------------------------------------ encoding
    def transform(self, rows: Any, first_row: int = 0) -> Encoded:
        """``rows`` as the model takes them: a DataFrame (its columns matched by name, in any
        order; ignored columns dropped) or an array whose columns are these, in this order.
        A missing or unexpected column, text in a numeric column, an infinite value or one too
        large to score raise InputError naming the row (counted from ``first_row``) and column."""
        # an array's columns are told by position (a table's header, or the array's index)
        column_name = (lambda j: self.columns[j].name) if self.named else (lambda j: j)
        if not isinstance(rows, np.ndarray) and not self.named:
            self.check_header([str(c) for c in rows.columns])
            rows = np.column_stack([_numbers(rows.iloc[:, j], j, first_row) for j in range(rows.shape[1])]) \
                if len(rows) else np.empty((0, len(self.columns)))
        if isinstance(rows, np.ndarray):
            values = np.asarray(rows, dtype=np.float64)
            mean = np.array([c.mean for c in self.columns])
            std = np.array([c.std for c in self.columns])
            with np.errstate(over="ignore"):  # a value beyond float32 is found and named just below
                x = ((values - mean) / std).astype(np.float32)
            self._check_finite(values, x, column_name, first_row)
            return Encoded(x, {})
        frame = self._matched(rows)
        parts, unseen = [], {}
        for column in self.columns:
            values = frame[column.name]
            if column.kind == NUMERIC:
                numbers = _numbers(values, column.name, first_row)
                with np.errstate(over="ignore"):  # named just below
                    part = ((numbers - column.mean) / column.std).astype(np.float32)[:, None]
                self._check_finite(numbers[:, None], part, lambda j: column.name, first_row)
            else:
                part, n_unseen = _one_hot(values, column.categories)
                if n_unseen:
                    unseen[column.name] = n_unseen
            parts.append(part)
        return Encoded(np.ascontiguousarray(np.hstack(parts)), unseen)

    def _matched(self, frame: Any) -> Any:
        given = [str(c) for c in frame.columns]
        self.check_header(given)
        return frame.set_axis(given, axis=1)

    def check_header(self, given: list[str]) -> None:
        """Raise InputError for a column of these that ``given`` lacks, or one it has that is
        neither these nor ignored (by position, for an array's columns: their count)."""
        if not self.named:
            if len(given) != len(self.columns):
                raise InputError(f"{len(given)} columns ({', '.join(given[:8])}{', ...' if len(given) > 8 else ''}); "
                                 f"the detector takes {len(self.columns)} numbers a row, one column each, in the "
                                 "order it was fitted on (drop any label or id column)")
            return
        missing = [n for n in self.names if n not in given]
        if missing:
            raise InputError(f"no column {missing[0]!r}; the detector was fitted on the columns "
                             f"{', '.join(self.names)} (matched by name, in any order)")
        unexpected = [n for n in given if n not in self.names and n not in self.ignored]
        if unexpected:
            raise InputError(f"a column {unexpected[0]!r} the detector was not fitted on; drop it (it was fitted on "
                             f"{', '.join(self.names)}{', ignoring ' + ', '.join(self.ignored) if self.ignored else ''})")

    @staticmethod
    def _check_finite(values: np.ndarray, scaled: np.ndarray, name: Any, first_row: int) -> None:
        bad = np.argwhere(~np.isfinite(scaled) & ~np.isnan(values))
        if len(bad):
            row, j = (int(i) for i in bad[0])
            value = values[row, j]
            problem = (f"an infinite value ({value})" if np.isinf(value) else
                       f"the value {value:g} is too large to score (beyond float32's {FLOAT32_MAX:.3g} once "
                       "scaled by the training rows' mean and std)")
            raise InputError(problem, first_row + row, name(j))

    # ------------------------------------------------------------------ back to a table
    def frame(self, x: np.ndarray) -> Any:
        """Encoded rows back as a table, one column per column: numbers standardised, categories
        as text (None where missing or unseen). For detectors that take a table through
        scikit-learn's ColumnTransformer (the PyOD baselines)."""
        import pandas as pd

        out, start = {}, 0
        for column in self.columns:
            block = x[:, start:start + column.width]
            if column.kind == NUMERIC:
                out[column.name] = block[:, 0].astype(np.float64)
            else:
                known = np.isfinite(block).all(axis=1) & (np.nan_to_num(block).sum(axis=1) > 0)
                labels = np.array(column.categories, dtype=object)[np.nan_to_num(block).argmax(axis=1)]
                out[column.name] = np.where(known, labels, None)
            start += column.width
        return pd.DataFrame(out)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        return {"columns": [asdict(c) for c in self.columns], "ignored": list(self.ignored), "named": self.named}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ColumnEncoding:
        return cls([Column(**c) for c in doc["columns"]], list(doc.get("ignored", [])), doc.get("named", True))


ENCODING = "columns"  # the member of prepare's features.npz that holds the encoding


def encoding_member(encoding: ColumnEncoding | None) -> dict[str, np.ndarray]:
    """``encoding`` as JSON text in a 0-d array, an .npz member beside the splits (images,
    which have none, as null), so that the stages read one file for the rows and their columns."""
    doc = encoding.to_json() if encoding is not None else None
    return {ENCODING: np.array(json.dumps(doc, sort_keys=True))}


def read_encoding(path: str) -> ColumnEncoding | None:
    """The encoding :func:`encoding_member` put in the .npz ``path``; None for images."""
    doc = json.loads(str(read_arrays(path, ENCODING)[ENCODING]))
    return None if doc is None else ColumnEncoding.from_json(doc)


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std, over the values present; a constant column's std is 1, so it
    stays constant instead of becoming NaN.

    Constant is told by its values (the largest equals the smallest), not by a std of 0: the
    mean of n equal floats need not equal them (700 copies of 1.1 in a table's column average
    to 1e-14 off), so their std is that rounding error, and dividing by it would blow a later
    row's other value up by 1e14 (ODDS cardio: a NaN validation loss)."""
    if np.isnan(x).any():
        mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        constant = np.nanmax(x, axis=0) == np.nanmin(x, axis=0)
    else:
        mean, std = x.mean(axis=0), x.std(axis=0)
        constant = x.max(axis=0) == x.min(axis=0)
    std[constant] = 1.0
    return mean, std


def _is_number(values: Any) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _as_text(values: Any) -> list[str]:
    return [str(v) for v in values]


def _numbers(values: Any, name: str | int, first_row: int) -> np.ndarray:
    """A numeric column's values as float64 (NaN where missing); text raises InputError."""
    import pandas as pd

    if _is_number(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy() & values.notna().to_numpy())
    if len(bad):
        raise InputError(f"{values.iloc[bad[0]]!r} is not a number, but the column was numeric in the training rows",
                         first_row + int(bad[0]), name)
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _one_hot(values: Any, categories: list[str]) -> tuple[np.ndarray, int]:
    """One-hot rows over ``categories``: NaN rows where missing, zero rows where unseen."""
    import pandas as pd

    present = values.notna().to_numpy()
    codes = pd.Index(categories).get_indexer(pd.Series(_as_text(values), dtype=object).where(present))  # -1: unseen
    block = np.zeros((len(values), len(categories)), dtype=np.float32)
    known = codes >= 0
    block[np.flatnonzero(known), codes[known]] = 1.0
    block[~present] = np.nan
    return block, int((present & ~known).sum())

"""Sizing to the data: batch sizes capped at the rows, KNN's k below them, the validation split
raised to its minimum, and a table too small for them refused in prepare with what to change."""
import logging

import numpy as np
import pytest

from vae_anomaly.data.sizing import MIN_TRAIN_ROWS, MIN_VAL_ROWS, capped_batch_size, neighbors_below, validation_rows
from vae_anomaly.data.sources import make_splits
from vae_anomaly.errors import ParamsError, UserError
from vae_anomaly.evaluation.baselines import size_to_rows
from vae_anomaly.params import validate


def test_batch_size_is_capped_at_the_rows_in_one_logged_line(caplog):
    caplog.set_level(logging.INFO, logger="vae_anomaly")
    assert capped_batch_size("train.batch_size", 128, 128) == (128, {})
    assert caplog.records == []
    used, record = capped_batch_size("train.batch_size", 128, 66)
    assert used == 66
    assert record == {"train.batch_size": {"asked": 128, "used": 66, "why": "only 66 training rows"}}
    assert [r.getMessage() for r in caplog.records] == [
        "train.batch_size: asked 128, used 66: only 66 training rows"
    ]


def test_knn_k_stays_below_the_rows():
    assert neighbors_below("baselines.knn_neighbors", 5, 6) == (5, {})
    used, record = neighbors_below("baselines.knn_neighbors", 5, 5)
    assert used == 4 and record["baselines.knn_neighbors"]["asked"] == 5


@pytest.mark.parametrize("n, fraction, expected, adapted", [
    (200, 0.1, 20, False),
    (100, 0.1, 10, False),  # exactly the minimum: nothing to adapt
    (37, 0.1, 10, True),  # 0.1 of 37 gives 4
    (20, 0.5, 10, False),  # the fewest rows accepted, half of them validation
])
def test_validation_split_is_the_fraction_but_at_least_the_minimum(n, fraction, expected, adapted):
    n_val, record = validation_rows(n, fraction, "rows", "change it")
    assert n_val == expected and n - n_val >= MIN_TRAIN_ROWS
    if adapted:
        assert record == {"data.val_fraction": {
            "asked": round(fraction * n), "used": MIN_VAL_ROWS,
            "why": f"{fraction:g} of {n} rows gives {round(fraction * n)}, below the minimum of 10 validation rows",
        }}
    else:
        assert record == {}


def test_too_few_rows_for_training_and_validation_are_refused():
    with pytest.raises(UserError, match=r"^the table gives 19 rows for training and validation; at "
                                        r"least 20 are needed \(10 training \+ 10 validation\): do this$"):
        validation_rows(MIN_TRAIN_ROWS + MIN_VAL_ROWS - 1, 0.5, "the table", "do this")


def file_splits(params, tmp_path, n_normal, n_anomaly=3, train_fraction=0.5):
    rng = np.random.default_rng(0)
    path = tmp_path / "table.npz"
    np.savez(path, X=rng.normal(size=(n_normal + n_anomaly, 3)), y=np.r_[np.zeros(n_normal), np.ones(n_anomaly)])
    params["data"].update(source="file")
    params["data"]["file"].update(path=str(path), train_fraction=train_fraction)
    return make_splits(validate(params)["data"])


def test_a_13_row_table_stops_in_prepare_with_one_line(params, tmp_path):
    with pytest.raises(UserError) as err:
        file_splits(params, tmp_path, n_normal=10)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("data.file.train_fraction = 0.5 of the 10 normal rows (label 0) of ")
    assert message.endswith("use a table with more normal rows: at least 21, 40 at data.file.train_fraction 0.5")


@pytest.mark.parametrize("n_normal", [21, 25, 30, 38])
def test_the_train_fraction_suggested_for_a_small_table_runs(params, tmp_path, n_normal):
    with pytest.raises(UserError, match=r"raise data.file.train_fraction to (0\.\d\d) or more$") as err:
        file_splits(params, tmp_path, n_normal)
    suggested = float(err.value.args[0].rsplit(" to ", 1)[1].split()[0])
    splits = file_splits(params, tmp_path, n_normal, train_fraction=suggested)
    assert len(splits.train) >= MIN_TRAIN_ROWS and len(splits.val) >= MIN_VAL_ROWS
    assert (splits.test_label == 0).sum() >= 1  # a normal row is left for the test set


def test_the_smallest_table_that_runs_with_defaults(params, tmp_path):
    """39 normal rows: half of them (rounded) is 20, the minimum training + validation split."""
    splits = file_splits(params, tmp_path, n_normal=39)
    assert (len(splits.train), len(splits.val)) == (MIN_TRAIN_ROWS, MIN_VAL_ROWS)
    assert splits.summary()["adaptations"]["data.val_fraction"]["used"] == MIN_VAL_ROWS
    with pytest.raises(UserError, match="gives 19 rows"):
        file_splits(params, tmp_path, n_normal=38)


def test_synthetic_splits_below_the_minimum_are_refused_up_front(params):
    params["data"]["synthetic"]["n_val"] = MIN_VAL_ROWS - 1
    with pytest.raises(ParamsError, match=r"data.synthetic.n_val = 9 is not allowed; expected an integer >= 10"):
        validate(params)


def test_blobs2d_with_too_few_training_rows_names_its_param(params):
    params["data"].update(source="blobs2d")
    params["data"]["blobs2d"]["n_train"] = 12
    with pytest.raises(UserError, match=r"^data.blobs2d.n_train = 12 gives 12 rows .*: raise data.blobs2d.n_train$"):
        make_splits(validate(params)["data"])


def test_baselines_are_sized_only_where_they_run(params):
    baselines, budget = {**params["baselines"], "knn_neighbors": 5}, {"batch_size": 128}
    sized, sized_budget, record = size_to_rows(baselines, budget, n_rows=5)
    assert (sized_budget["batch_size"], sized["knn_neighbors"]) == (5, 4)
    assert set(record) == {"train.batch_size", "baselines.knn_neighbors"}
    assert budget["batch_size"] == 128 and baselines["knn_neighbors"] == 5  # the params are left as asked
    sized, sized_budget, record = size_to_rows({**baselines, "names": ["iforest", "ecod"]}, budget, n_rows=5)
    assert record == {} and sized_budget["batch_size"] == 128

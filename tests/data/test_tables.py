"""data.source = 'file': a user's table as .npz, .csv, .parquet or .mat, and every bad input refused."""
import numpy as np
import pandas as pd
import pytest
from scipy.io import savemat

from vae_anomaly.data.sources import make_splits
from vae_anomaly.data.splits import ANOMALY, NORMAL
from vae_anomaly.data.tables import load_table
from vae_anomaly.errors import ParamsError, UserError
from vae_anomaly.params import validate


def table(n_normal=40, n_anomaly=6, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(5, 2, (n_normal, n_features)), rng.normal(20, 1, (n_anomaly, n_features))])
    y = np.r_[np.zeros(n_normal), np.ones(n_anomaly)]
    order = rng.permutation(len(y))
    return x[order], y[order]


def write_csv(path, x, y, label="is_anomaly", cells=None):
    header = ["a", label, "b", "c"][: x.shape[1] + 1]
    lines = [",".join(header)]
    for row, label_value in zip(x, y):
        values = [f"{row[0]:.6f}", f"{label_value:g}", *(f"{v:.6f}" for v in row[1:])]
        lines.append(",".join(values))
    if cells:
        for (line, column), text in cells.items():
            fields = lines[line].split(",")
            fields[column] = text
            lines[line] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path


def file_params(params, path, train_fraction=0.5, label_column="is_anomaly"):
    params["data"].update(source="file", val_fraction=0.25)
    params["data"]["file"].update(path=str(path), label_column=label_column, train_fraction=train_fraction)
    return validate(params)["data"]


def write_parquet(path, x, y, label="is_anomaly"):
    columns = {"a": x[:, 0], label: y, **{name: x[:, j] for j, name in enumerate("bc", start=1)}}
    pd.DataFrame(columns).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["npz", "csv", "parquet", "mat"])
def test_each_format_loads_the_same_table(tmp_path, fmt):
    x, y = table()
    path = tmp_path / f"data.{fmt}"
    if fmt == "npz":
        np.savez(path, X=x, y=y)
    elif fmt == "mat":
        savemat(path, {"X": x, "y": y[:, None]})  # ODDS keeps y as a column vector
    elif fmt == "parquet":
        write_parquet(path, x, y)
    else:
        write_csv(path, x, y)
    loaded = load_table(path, "is_anomaly")
    np.testing.assert_allclose(loaded.features, x, atol=1e-6)
    np.testing.assert_array_equal(loaded.labels, y.astype(np.int64))
    expected = ["a", "b", "c"] if fmt in ("csv", "parquet") else ["X column 0", "X column 1", "X column 2"]
    assert loaded.feature_names == expected


def test_splits_train_on_normal_rows_and_test_on_the_rest_scaled_by_training_statistics(tmp_path, params):
    x, y = table(n_normal=80, n_anomaly=6)
    path = tmp_path / "data.npz"
    np.savez(path, X=x, y=y)
    splits = make_splits(file_params(params, path, train_fraction=0.5))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 46)
    assert splits.summary()["adaptations"] == {}  # 0.25 of 40 rows is the minimum validation split
    assert splits.test_label.sum() == 6 and set(splits.test_kind) == {NORMAL, ANOMALY}
    np.testing.assert_allclose(splits.train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(splits.train.std(axis=0), 1, atol=1e-5)
    # the anomalies (mean 20) stay far from the training rows (mean 5, std 2) after scaling
    assert splits.test[splits.test_label == 1].mean() > 5
    again = make_splits(file_params(params, path, train_fraction=0.5))
    np.testing.assert_array_equal(splits.test, again.test)  # seeded
    params["data"]["seed"] = 1
    other = make_splits(validate(params)["data"])
    assert not np.array_equal(splits.train, other.train)


@pytest.mark.parametrize("cells, message", [
    ({(3, 2): "nan"}, r"data.csv, column 'b': 1 value\(s\) are NaN, empty or infinite \(first, NaN or empty, in data row 3\)"),
    ({(5, 3): "inf"}, r"column 'c'.*first, infinite, in data row 5"),
    ({(2, 0): ""}, r"column 'a'.*NaN or empty"),
    ({(4, 1): "2"}, r"label column 'is_anomaly': labels must be 0 \(normal\) or 1 \(anomaly\), found 2 \(first in data row 4\)"),
    ({(4, 1): ""}, r"column 'is_anomaly'.*NaN or empty"),
    ({(6, 2): "red"}, r"data.csv, row 6 \(line 7\), column 'b': 'red' is not a number"),
])
def test_bad_csv_values_name_the_file_and_column(tmp_path, cells, message):
    x, y = table()
    path = write_csv(tmp_path / "data.csv", x, y, cells=cells)
    with pytest.raises(UserError, match=message):
        load_table(path, "is_anomaly")


def test_missing_label_column_names_it_and_lists_the_columns(tmp_path):
    x, y = table()
    path = write_csv(tmp_path / "data.csv", x, y, label="target")
    with pytest.raises(UserError, match=r"data.csv has no label column 'is_anomaly' \(data.file.label_column\); its columns are: a, target, b, c"):
        load_table(path, "is_anomaly")


@pytest.mark.parametrize("fmt", ["npz", "mat"])
def test_bad_arrays_name_the_file_and_column(tmp_path, fmt):
    x, y = table()
    path = tmp_path / f"data.{fmt}"
    save = (lambda **a: np.savez(path, **a)) if fmt == "npz" else (lambda **a: savemat(path, a))
    bad_x = x.copy()
    bad_x[7, 1] = np.inf
    save(X=bad_x, y=y)
    with pytest.raises(UserError, match=rf"data.{fmt}, column 'X column 1'.*infinite, in data row 8"):
        load_table(path, "ignored")
    save(X=x, y=np.where(y == 1, -1, 0))
    with pytest.raises(UserError, match=rf"data.{fmt}, label column 'y': labels must be 0 \(normal\) or 1 \(anomaly\), found -1"):
        load_table(path, "ignored")
    save(X=x, labels=y)
    with pytest.raises(UserError, match=rf"data.{fmt} has no array 'y' \(found: X, labels\)"):
        load_table(path, "ignored")


def test_missing_file_and_unknown_type_are_refused(tmp_path):
    with pytest.raises(UserError, match=r"data.file.path = '.*nope.csv': no such file"):
        load_table(tmp_path / "nope.csv", "label")
    path = tmp_path / "data.feather"
    path.write_bytes(b"ARROW1")
    with pytest.raises(UserError, match=r"unknown file type '.feather'.*\.npz, \.csv, \.parquet, \.mat"):
        load_table(path, "label")
    path = tmp_path / "data.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(UserError, match=r"data.parquet is not a readable .parquet file"):
        load_table(path, "label")
    path = tmp_path / "data.mat"
    path.write_text("not matlab")
    with pytest.raises(UserError, match=r"data.mat is not a readable MATLAB .mat file"):
        load_table(path, "label")


def test_too_few_normal_rows_are_refused(tmp_path, params):
    path = tmp_path / "data.npz"
    np.savez(path, X=np.arange(10.0).reshape(5, 2), y=np.array([0, 0, 1, 1, 1]))
    with pytest.raises(UserError, match="2 normal rows"):
        make_splits(file_params(params, path))


def test_params_need_a_path_and_a_fraction_below_one(params):
    params["data"]["source"] = "file"
    with pytest.raises(ParamsError, match="data.source = 'file' needs data.file.path"):
        validate(params)
    params["data"]["file"].update(path="x.csv", train_fraction=1.0)
    with pytest.raises(ParamsError, match=r"data.file.train_fraction = 1.0 leaves no normal rows"):
        validate(params)


def test_parquet_refuses_text_cells_and_a_missing_label_column_by_name_and_row(tmp_path):
    x, y = table()
    path = write_parquet(tmp_path / "data.parquet", x, y)
    frame = pd.read_parquet(path)
    frame["b"] = frame["b"].astype(object)
    frame.loc[4, "b"] = "high"
    frame.astype({"b": str}).to_parquet(path)
    with pytest.raises(UserError, match=r"data.parquet, row 5, column 'b': 'high' is not a number"):
        load_table(path, "is_anomaly")
    write_parquet(path, x, y, label="fault")
    with pytest.raises(UserError, match=r"data.parquet has no label column 'is_anomaly'.*columns are: a, fault, b, c"):
        load_table(path, "is_anomaly")
    frame = pd.read_parquet(path)
    frame.loc[2, "c"] = np.nan
    frame.to_parquet(path)
    with pytest.raises(UserError, match=r"data.parquet, column 'c'.*NaN or empty, in data row 3"):
        load_table(path, "fault")

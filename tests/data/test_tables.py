"""data.source = 'file': a user's table as .npz, .csv, .parquet or .mat, of numbers, categories and
gaps, and every bad input refused."""
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
    if fmt in ("csv", "parquet"):  # a table of columns by name, any type
        assert list(loaded.frame.columns) == ["a", "b", "c"] and loaded.ignored == ["is_anomaly"]
        np.testing.assert_allclose(loaded.frame.to_numpy(dtype=float), x, atol=1e-6)
    else:  # an array of numbers
        assert loaded.feature_names == ["X column 0", "X column 1", "X column 2"]
        np.testing.assert_allclose(loaded.features, x, atol=1e-6)
    np.testing.assert_array_equal(loaded.labels, y.astype(np.int64))


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
    ({(5, 3): "inf"}, r"data.csv, column 'c': 1 value\(s\) are infinite \(first in data row 5\); replace them"),
    ({(4, 1): "2"}, r"label column 'is_anomaly': labels must be 0 \(normal\) or 1 \(anomaly\), found 2 \(first in data row 4\)"),
    ({(4, 1): ""}, r"label column 'is_anomaly': 1 label\(s\) are missing, text or infinite \(first in data row 4\)"),
])
def test_bad_csv_values_name_the_file_and_column(tmp_path, cells, message):
    x, y = table()
    path = write_csv(tmp_path / "data.csv", x, y, cells=cells)
    with pytest.raises(UserError, match=message):
        load_table(path, "is_anomaly")


def mixed_table(n=120, seed=0):
    """Numbers with gaps, a text category, a boolean and an id, with a label column."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"row-{i}" for i in range(n)],
        "amount": rng.normal(50, 10, n),
        "country": rng.choice(["fr", "de", "it"], n),
        "card_present": rng.random(n) < 0.5,
        "label": np.r_[np.zeros(n - 10), np.ones(10)].astype(int),
    })
    frame.loc[[3, 17, 40], "amount"] = np.nan
    frame.loc[[5, 60], "country"] = None
    return frame


def test_a_mixed_table_is_read_with_its_columns_kinds_and_gaps(tmp_path, params):
    frame = mixed_table()
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    params["data"]["file"]["drop_columns"] = ["id"]
    splits = make_splits(file_params(params, path, label_column="label"))
    encoding = splits.encoding
    assert [(c.name, c.kind) for c in encoding.columns] == [
        ("amount", "numeric"), ("country", "categorical"), ("card_present", "categorical")]
    assert encoding.columns[1].categories == ["de", "fr", "it"] and encoding.columns[2].categories == ["False", "True"]
    assert encoding.ignored == ["label", "id"]
    assert splits.train.shape[1] == 1 + 3 + 2 == encoding.width
    everything = np.concatenate([splits.train, splits.val, splits.test])
    assert np.isnan(everything[:, 0]).sum() == 3  # the gaps stay gaps
    assert np.isnan(everything[:, 1:4]).all(axis=1).sum() == 2  # a missing category: its whole block
    one_hot = everything[~np.isnan(everything[:, 1]), 1:4]
    assert (one_hot.sum(axis=1) == 1).all()
    from vae_anomaly.data.figures import examples_figure  # prepare's figure of the rows, gaps and all

    points = examples_figure(splits).axes[0].collections[0].get_offsets()
    assert np.isfinite(points).all()


def test_columns_named_categorical_or_dropped_must_exist_and_an_id_is_refused(tmp_path, params):
    frame = mixed_table(n=300)
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    params["data"]["file"]["drop_columns"] = ["identifier"]
    with pytest.raises(UserError, match=r"data.file.drop_columns names 'identifier', which is not a column of .*data.csv"):
        make_splits(file_params(params, path, label_column="label"))
    params["data"]["file"].update(drop_columns=["id"], categorical=["amount_band"])
    with pytest.raises(UserError, match=r"data.file.categorical names 'amount_band', which is not a column"):
        make_splits(file_params(params, path, label_column="label"))
    params["data"]["file"].update(drop_columns=[], categorical=[])
    with pytest.raises(UserError, match=r"column 'id' .* distinct values in .* rows: an identifier, not a category; "
                                        r"leave it out \(data.file.drop_columns\)"):
        make_splits(file_params(params, path, label_column="label"))


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
    with pytest.raises(UserError, match=rf"data.{fmt}, column 'X column 1': 1 value\(s\) are infinite \(first in data row 8\)"):
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


def test_parquet_reads_text_as_categories_and_refuses_a_missing_label_column(tmp_path):
    x, y = table()
    path = write_parquet(tmp_path / "data.parquet", x, y)
    frame = pd.read_parquet(path)
    frame["b"] = np.where(frame["b"] > 5, "high", "low")
    frame.loc[2, "c"] = np.nan
    frame.to_parquet(path)
    loaded = load_table(path, "is_anomaly")
    assert loaded.frame["b"].tolist()[:3] == frame["b"].tolist()[:3] and np.isnan(loaded.frame.loc[2, "c"])
    write_parquet(path, x, y, label="fault")
    with pytest.raises(UserError, match=r"data.parquet has no label column 'is_anomaly'.*columns are: a, fault, b, c"):
        load_table(path, "is_anomaly")

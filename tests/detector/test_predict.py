"""``python -m vae_anomaly predict``: a saved detector scores a file of new rows or images as
the score stage scored them, in chunks, and refuses bad input by file, row and column
without writing any output."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

from vae_anomaly.detector.detector import Detector
from vae_anomaly.detector.predict import predict_file
from vae_anomaly.errors import UserError

N_FEATURES = 5


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """A small detector of 5 features saved to a folder, and rows to score."""
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(2, N_FEATURES))
    x = rng.normal(size=(400, 2)) @ mixing + 10 + 0.1 * rng.normal(size=(400, N_FEATURES))
    detector = Detector(model={"hidden_dims": [8], "latent_dim": 2},
                        train={"epochs": 2, "kl_warmup_epochs": 1, "device": "cpu"},
                        score={"names": ["negative_elbo", "reconstruction_mse", "latent_knn"], "primary": "negative_elbo",
                               "elbo_samples": 2, "batch_size": 32}).fit(x[:300])
    folder = tmp_path_factory.mktemp("tabular") / "detector"
    detector.save(folder)
    return folder, detector, x[300:]


def write_table(path, rows, columns=None):
    frame = pd.DataFrame(rows, columns=columns or [f"f{j}" for j in range(rows.shape[1])])
    frame.to_csv(path, index=False) if path.suffix == ".csv" else frame.to_parquet(path)
    return path


def read_output(path) -> dict:
    if path.suffix == ".npz":
        with np.load(path) as npz:
            return dict(npz)
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return {name: frame[name].to_numpy() for name in frame.columns}


@pytest.mark.parametrize("fmt_in,fmt_out", [("csv", "csv"), ("parquet", "parquet"), ("npz", "npz"), ("csv", "npz")])
def test_every_format_gives_the_detectors_scores_and_flags(tabular, tmp_path, fmt_in, fmt_out):
    folder, detector, rows = tabular
    path = tmp_path / f"new.{fmt_in}"
    np.savez(path, X=rows) if fmt_in == "npz" else write_table(path, rows)
    out = tmp_path / f"scores.{fmt_out}"
    counts = predict_file(folder, path, out, chunk_rows=40)  # three chunks, the last one short
    got, expected = read_output(out), detector.all_scores(rows)
    assert list(got) == ["negative_elbo", "reconstruction_mse", "latent_knn", "anomaly"]
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-9)
    np.testing.assert_array_equal(got["anomaly"], detector.predict(rows))
    assert counts == {"rows": 100, "flagged": int(detector.predict(rows).sum())}


def test_the_chunk_size_changes_nothing(tabular, tmp_path):
    folder, _, rows = tabular
    path = write_table(tmp_path / "new.csv", rows)
    predict_file(folder, path, tmp_path / "one.csv")
    predict_file(folder, path, tmp_path / "many.csv", chunk_rows=1)  # rounded up to whole batches of 32
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "many.csv").read_text()


def bad_table_cases(rows):
    text = pd.DataFrame(rows, columns=[f"f{j}" for j in range(N_FEATURES)]).astype(object)
    text.loc[72, "f3"] = "n/a?"
    huge = pd.DataFrame(rows.copy(), columns=[f"f{j}" for j in range(N_FEATURES)])
    huge.loc[61, "f2"] = 1e300
    return {
        "wrong feature count": (pd.DataFrame(rows[:, :4], columns=["a", "b", "c", "label"]),
                                r"new.csv: 4 columns \(a, b, c, label\); the detector takes 5 numbers a row"),
        "non-numeric": (text, r"new.csv, row 73 \(line 74\), column 'f3': 'n/a\?' is not a number"),
        "too large": (huge, r"new.csv, row 62 \(line 63\), column 'f2': the value 1e\+300 is too large to score"),
    }


@pytest.mark.parametrize("case", ["wrong feature count", "non-numeric", "too large"])
def test_a_bad_csv_is_refused_by_row_and_column_and_writes_no_output(tabular, tmp_path, case):
    folder, _, rows = tabular
    frame, message = bad_table_cases(rows)[case]
    frame.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "scores.csv"
    out.write_text("the previous run's output\n")
    with pytest.raises(UserError, match=message):
        predict_file(folder, tmp_path / "new.csv", out, chunk_rows=32)  # the bad row lies in a later chunk
    assert out.read_text() == "the previous run's output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "scores.csv"]  # no temporary file left


def test_a_bad_parquet_or_npz_is_refused_with_its_place(tabular, tmp_path):
    folder, _, rows = tabular
    bad = rows.copy()
    bad[45, 1] = np.inf
    write_table(tmp_path / "new.parquet", bad)
    with pytest.raises(UserError, match=r"new.parquet, row 46, column 'f1': an infinite value"):
        predict_file(folder, tmp_path / "new.parquet", tmp_path / "scores.csv")
    np.savez(tmp_path / "new.npz", X=bad)
    with pytest.raises(UserError, match=r"new.npz, X\[45, 1\]: an infinite value"):
        predict_file(folder, tmp_path / "new.npz", tmp_path / "scores.csv")
    np.savez(tmp_path / "new.npz", a=rows, b=rows)
    with pytest.raises(UserError, match=r"new.npz holds the arrays a, b; predict reads the array 'X'"):
        predict_file(folder, tmp_path / "new.npz", tmp_path / "scores.csv")
    write_table(tmp_path / "new.csv", rows)
    with pytest.raises(UserError, match=r"--output .*scores.xlsx: unknown file type '.xlsx'"):
        predict_file(folder, tmp_path / "new.csv", tmp_path / "scores.xlsx")
    (tmp_path / "numbers.csv").write_text("1,2,3,4,5\n6,7,8,9,10\n")
    with pytest.raises(UserError, match=r"numbers.csv: the first line holds numbers .* needs a header row"):
        predict_file(folder, tmp_path / "numbers.csv", tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


def test_the_command_line_prints_one_line_and_exits_2_on_bad_input(tabular, tmp_path):
    folder, _, rows = tabular
    bad = rows.copy()
    bad[3, 4] = np.inf
    write_table(tmp_path / "new.csv", bad)
    done = subprocess.run(
        [sys.executable, "-m", "vae_anomaly", "predict", "--detector", str(folder), "--input",
         str(tmp_path / "new.csv"), "--output", str(tmp_path / "scores.csv")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"},
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert errors == [f"vae_anomaly ERROR: {tmp_path / 'new.csv'}, row 4 (line 5), column 'f4': an infinite value (inf)"]
    assert "Traceback" not in done.stderr and not (tmp_path / "scores.csv").exists()


def test_images_score_as_the_score_stage_scored_the_test_split(tmp_path, monkeypatch):
    """prepare, train, score, threshold and detector on scikit-learn's digits, then predict
    on the test images as a .npz: the score stage's numbers, and the threshold's flags."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="digits")
    params["model"].update(likelihood="discretized_logistic", hidden_dims=[32], latent_dim=2)
    params["train"].update(epochs=2, kl_warmup_epochs=1, device="cpu")
    params["score"].update(names=["negative_elbo", "complexity_corrected", "latent_residual_knn"],
                           primary="negative_elbo", elbo_samples=2, iwae_samples=4, batch_size=100)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "1")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in ("prepare", "train", "score", "threshold", "detector"):
        importlib.import_module(f"stages.{stage}").main()
    with np.load("data/prepared/features.npz") as features, np.load("data/scores/test.npz") as scores:
        test, expected = features["test"], dict(scores)
    np.savez("new_images.npz", X=test[:, 0])  # one channel may come as (N, H, W)
    predict_file("data/detector", "new_images.npz", "scores.npz", chunk_rows=150)
    got = read_output(tmp_path / "scores.npz")
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5)
    threshold = yaml.safe_load((tmp_path / "reports/threshold.json").read_text())["threshold"]
    np.testing.assert_array_equal(got["anomaly"], (expected["negative_elbo"] > threshold).astype(int))
    np.savez("wrong.npz", X=test[:, :, :4])
    with pytest.raises(UserError, match=r"wrong.npz: X holds images of shape \(1, 4, 8\); the detector was fitted "
                                        r"on images of shape \(1, 8, 8\)"):
        predict_file("data/detector", "wrong.npz", "scores2.npz")
    write_table(tmp_path / "new_images.csv", test.reshape(len(test), -1))
    with pytest.raises(UserError, match=r"this detector scores images of shape \(1, 8, 8\); give a folder of image files"):
        predict_file("data/detector", "new_images.csv", "scores2.npz")

"""The Detector: the pipeline's scores through PyOD's API, streaming, saving and loading, and
the inputs it refuses."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT
from sklearn.base import clone

from vae_anomaly.data import splits, synthetic
from vae_anomaly.data.columns import encoding_member
from vae_anomaly.detector.detector import Detector
from vae_anomaly.detector.folder import FORMAT
from vae_anomaly.errors import InputError, ParamsError, UserError
from vae_anomaly.evaluation.metrics import ranking_metrics
from vae_anomaly.io import write_arrays, write_json
from vae_anomaly.model.vae import save_model
from vae_anomaly.pipeline import SPLITS, score_splits, train_model
from vae_anomaly.scoring.reference import reference_arrays

SMALL = {
    "model": {"hidden_dims": [16, 8], "latent_dim": 2},
    "train": {"epochs": 3, "kl_warmup_epochs": 1, "device": "cpu"},
    "score": {"names": ["negative_elbo", "reconstruction_mse", "latent_residual_knn", "combined"],
              "primary": "negative_elbo", "combine": ["reconstruction_mse", "latent_residual_knn"],
              "elbo_samples": 2, "batch_size": 64},
}


def raw_synthetic(n_train: int, n_val: int, n_test: int, monkeypatch) -> splits.Splits:
    """The synthetic splits before ``prepare`` standardises them: the rows a user would have."""
    cfg = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]["synthetic"]
    cfg.update(n_train=n_train, n_val=n_val, n_test=n_test)
    with monkeypatch.context() as m:
        m.setattr(synthetic, "standardize", lambda unscaled: unscaled)
        return synthetic.make_synthetic(cfg, seed=0)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return raw_synthetic(300, 100, 200, monkeypatch)


@pytest.fixture(scope="module")
def fitted(raw):
    return Detector(**SMALL).fit(raw.train, X_val=raw.val)


def test_fit_and_decision_function_give_the_pipelines_scores(raw, fitted, params):
    """prepare's scaling, train_model and score_splits on the same rows: the same numbers."""
    for name, section in SMALL.items():
        params[name].update(section)
    prepared = splits.standardize(raw)
    model, _, _ = train_model(prepared.train, prepared.val, params, torch.device("cpu"))
    pipeline = score_splits(model, {"train": prepared.train, "val": prepared.val, "test": prepared.test},
                            params["score"], params["train"]["seed"])
    scores = fitted.all_scores(raw.test)
    for name in SMALL["score"]["names"]:
        np.testing.assert_allclose(scores[name], pipeline["test"][name], rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_function(raw.test), pipeline["test"]["negative_elbo"], rtol=1e-6)
    np.testing.assert_allclose(fitted.decision_scores_, pipeline["train"]["negative_elbo"], rtol=1e-6)
    val = pipeline["val"]["negative_elbo"]
    assert fitted.threshold_ == pytest.approx(val.mean() + 3 * val.std())
    np.testing.assert_array_equal(fitted.labels_, (fitted.decision_scores_ > fitted.threshold_).astype(int))
    np.testing.assert_array_equal(fitted.predict(raw.test), (scores["negative_elbo"] > fitted.threshold_).astype(int))


def test_fit_on_the_training_rows_alone_matches_the_pipelines_roc_auc(monkeypatch, params):
    """``Detector(...).fit(X_train)`` keeps its own validation rows, so its model differs a
    little from the pipeline's; its test ROC-AUC stays close to the pipeline's."""
    raw = raw_synthetic(1000, 200, 1000, monkeypatch)
    sections = {"model": {"hidden_dims": [64, 32], "latent_dim": 4},
                "train": {"epochs": 15, "kl_warmup_epochs": 2, "lr": 0.01, "batch_size": 64, "device": "cpu"},
                "score": {"names": ["reconstruction_mse"], "primary": "reconstruction_mse"}}
    for name, section in sections.items():
        params[name].update(section)
    prepared = splits.standardize(raw)
    model, _, _ = train_model(prepared.train, prepared.val, params, torch.device("cpu"))
    pipeline = score_splits(model, {"train": prepared.train, "test": prepared.test}, params["score"], 0,
                            splits=("test",))["test"]["reconstruction_mse"]
    detector = Detector(**sections).fit(raw.train)
    ours = ranking_metrics(raw.test_label, detector.decision_function(raw.test))["roc_auc"]
    theirs = ranking_metrics(raw.test_label, pipeline)["roc_auc"]
    assert theirs > 0.8  # the models learnt something, so the comparison means something
    assert ours == pytest.approx(theirs, abs=0.03)


def test_scores_do_not_depend_on_how_a_stream_is_cut(raw, fitted):
    whole = fitted.all_scores(raw.test)
    cuts = [0, 1, 50, 64, 65, 190, 200]
    parts = list(fitted.score_stream(raw.test[a:b] for a, b in zip(cuts[:-1], cuts[1:])))
    for name in whole:
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), whole[name])


def test_a_saved_detector_loads_and_scores_the_same(raw, fitted, tmp_path):
    fitted.save(tmp_path / "detector")
    loaded = Detector.load(tmp_path / "detector", "cpu")
    assert loaded.threshold_ == fitted.threshold_ and loaded.params_ == fitted.params_
    np.testing.assert_array_equal(loaded.decision_scores_, fitted.decision_scores_)
    np.testing.assert_array_equal(loaded.labels_, fitted.labels_)
    for name, values in fitted.all_scores(raw.test).items():
        np.testing.assert_array_equal(loaded.all_scores(raw.test)[name], values)
    meta = json.loads((tmp_path / "detector/detector.json").read_text())
    assert meta["format"] == FORMAT and {"torch", "numpy", "scikit-learn", "vae_anomaly"} <= set(meta["versions"])
    assert sorted(p.name for p in (tmp_path / "detector").iterdir()) == ["arrays.npz", "detector.json", "model.pt"]
    with np.load(tmp_path / "detector/arrays.npz", allow_pickle=False) as arrays:  # plain arrays, no pickle
        assert {"reference_codes", "reference_joint", "explanation_covariance"} <= set(arrays.files)
    assert meta["columns"]["columns"][0] == {"name": "x0", "kind": "numeric", "mean": fitted.encoding_.columns[0].mean,
                                             "std": fitted.encoding_.columns[0].std, "categories": []}


def test_the_detector_stage_writes_the_folder_save_writes(raw, fitted, tmp_path, monkeypatch):
    """The stage packages the files the train, score and threshold stages wrote, here made
    from a fitted detector: its folder is the one ``save`` writes, byte for byte, and loads
    into a detector that scores as the fitted one."""
    from stages import detector as stage

    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load((ROOT / "params.yaml").read_text())
    doc.update(fitted.params_)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    x_train, x_val = fitted.check_input(raw.train), fitted.check_input(raw.val)  # as fit scaled them
    save_model(fitted.model_, stage.MODEL)
    write_arrays(stage.FEATURES, train=x_train, **encoding_member(fitted.encoding_))
    write_arrays(stage.TRAIN_SCORES, **{fitted.primary: fitted.decision_scores_})
    seed = fitted.params_["train"]["seed"]
    write_arrays(stage.VAL_SCORES, **fitted._compute(x_val, seed + SPLITS.index("val"), components=True))
    write_arrays(stage.REFERENCE, **reference_arrays(fitted.reference_),
                 **{f"explanation_{k}": v for k, v in fitted.explanation_.arrays().items()})
    write_json(stage.THRESHOLD, {"threshold": fitted.threshold_})
    stage.main()
    fitted.save(tmp_path / "saved")
    for name in ("model.pt", "arrays.npz", "detector.json"):
        assert (tmp_path / stage.DETECTOR / name).read_bytes() == (tmp_path / "saved" / name).read_bytes(), name
    loaded = Detector.load(stage.DETECTOR, "cpu")
    for name, values in fitted.all_scores(raw.test).items():
        np.testing.assert_array_equal(loaded.all_scores(raw.test)[name], values)
    write_arrays(stage.REFERENCE)  # what the score stage writes without reference scores
    with pytest.raises(UserError, match=r"reference.npz holds no training reference, but score.names includes "
                                        r"latent_residual_knn; re-run the score stage"):
        stage.main()


def test_the_detector_stage_imports_neither_torch_nor_scikit_learn_nor_pyod():
    """It packages files the stages before it computed: their start-up (4.7 s of the stage's
    4.9 s) bought nothing."""
    heavy = ("torch", "sklearn", "pyod", "scipy")
    done = subprocess.run([sys.executable, "-c", "import sys, stages.detector; print(*sorted(sys.modules))"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    assert not [m for m in done.stdout.split() if m.split(".")[0] in heavy]


def test_load_refuses_another_format_version_and_a_folder_that_is_not_a_detector(fitted, tmp_path):
    folder = tmp_path / "detector"
    fitted.save(folder)
    meta = json.loads((folder / "detector.json").read_text())
    meta["format"] = "vae_anomaly/detector-v0"
    (folder / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"format 'vae_anomaly/detector-v0', but this vae_anomaly .* reads "
                                        r"'vae_anomaly/detector-v2' only; save it again"):
        Detector.load(folder)
    shutil.rmtree(folder)
    folder.mkdir()
    with pytest.raises(UserError, match=r"is not a saved detector \(no detector.json\)"):
        Detector.load(folder)


def test_inputs_it_cannot_score_are_refused_with_the_row_and_column(raw, fitted):
    with pytest.raises(InputError, match=r"X holds rows of 29 features; the detector was fitted on rows of 30"):
        fitted.decision_function(raw.test[:, :29])
    bad = raw.test.copy()
    bad[7, 3] = np.inf
    with pytest.raises(InputError, match=r"X\[7, 3\]: an infinite value"):
        fitted.predict(bad)
    bad[7, 3] = 1e300  # finite in float64, beyond float32 once scaled
    with pytest.raises(InputError, match=r"X\[7, 3\]: the value 1e\+300 is too large to score"):
        fitted.predict(bad)
    with pytest.raises(InputError, match=r"X holds <U1 values: give text and categories as a pandas DataFrame"):
        fitted.decision_function(np.array([["a"] * 30]))
    with pytest.raises(InputError, match=r"X is 1-D \(shape \(30,\)\); expected a table .*Reshape your data"):
        fitted.decision_function(raw.test[0])
    with pytest.raises(UserError, match=r"not fitted: call fit\(X\) first"):
        Detector().decision_function(raw.test)


def test_a_missing_value_is_scored_on_what_the_row_holds(raw, fitted):
    """A gap is no error: the row is scored on its other entries (the likelihood and the
    distances leave the entry out), and only that row's scores change."""
    gappy = raw.test[:50].copy()
    gappy[7, 3] = np.nan
    whole, with_gap = fitted.all_scores(raw.test[:50]), fitted.all_scores(gappy)
    for name in whole:
        assert np.isfinite(with_gap[name]).all(), name
        others = np.arange(50) != 7
        np.testing.assert_allclose(with_gap[name][others], whole[name][others], rtol=1e-5, err_msg=name)


def test_image_detector_refuses_other_shapes_integers_and_intensities_outside_0_1():
    rng = np.random.default_rng(0)
    images = rng.random((40, 1, 4, 4)).astype(np.float32)
    detector = Detector(model={"hidden_dims": [8], "latent_dim": 2, "likelihood": "bernoulli"},
                        train={"epochs": 1, "device": "cpu"}, score={"elbo_samples": 1}).fit(images)
    assert detector.decision_function(images[:, 0]).shape == (40,)  # one channel given as (N, H, W)
    with pytest.raises(InputError, match=r"X holds images of shape \(1, 4, 5\); the detector was fitted on images "
                                         r"of shape \(1, 4, 4\)"):
        detector.decision_function(rng.random((3, 1, 4, 5)))
    with pytest.raises(InputError, match=r"uint8 images; .*\(divide 8-bit images by 255\)"):
        detector.decision_function((images * 255).astype(np.uint8))
    bad = images.copy()
    bad[2, 0, 1, 3] = 1.5
    with pytest.raises(InputError, match=r"X\[2, \(0, 1, 3\)\]: intensity 1.5 lies outside \[0, 1\]"):
        detector.decision_function(bad)


@pytest.mark.parametrize("arguments, message", [
    ({"train": {"epoch": 3}}, r"unknown key 'train.epoch'"),
    ({"score": {"primary": "iwae"}}, r"score.primary = 'iwae' must be one of score.names"),
    ({"model": {"kind": "ae"}, "score": {"names": ["kl_to_prior"], "primary": "kl_to_prior"}},
     r"'kl_to_prior', which needs a VAE .*\(model.kind = 'vae'\)"),
    ({"threshold": {"split": "test"}}, r"threshold.split = 'test' .* use 'train' or 'val'"),
    ({"train": 30}, r"train = 30: give a dict of the train section's keys"),
    ({"val_fraction": 0.9}, r"data.val_fraction = 0.9 is not allowed"),
    ({"contamination": 0.7}, r"contamination = 0.7 is not allowed; expected None .* or a number > 0 and <= 0.5"),
])
def test_params_are_checked_when_fit_starts(arguments, message, monkeypatch):
    """The constructor stores its arguments (scikit-learn's rule); fit checks them first."""
    detector = Detector(**arguments)
    monkeypatch.setattr("vae_anomaly.detector.detector.train_model", lambda *a: pytest.fail("trained on bad params"))
    with pytest.raises(ParamsError, match=message):
        detector.fit(np.zeros((30, 3)))


def test_defaults_are_the_projects_params(params):
    """A key not given takes params.yaml's value: one source, vae_anomaly/params.py's schema
    (tests/test_params.py holds params.yaml equal to it)."""
    detector = Detector(train={"epochs": 3})
    checked = detector.checked_params()
    assert checked == {name: params[name] for name in ("model", "score", "threshold")} | {
        "train": {**params["train"], "epochs": 3}}
    assert detector.get_params()["val_fraction"] == params["data"]["val_fraction"]


def test_clone_get_params_and_set_params_follow_scikit_learn():
    """PyOD's combination and model-selection code clones detectors (sklearn.base.clone): the
    constructor's arguments come back as given, a clone is unfitted and shares nothing."""
    detector = Detector(model={"latent_dim": 2}, train={"epochs": 3}, contamination=0.05)
    twin = clone(detector)
    assert twin is not detector and twin.get_params() == detector.get_params() == {
        "model": {"latent_dim": 2}, "train": {"epochs": 3}, "score": None, "threshold": None,
        "val_fraction": 0.1, "contamination": 0.05, "categorical": None, "drop_columns": None}
    assert twin.model is not detector.model  # deep-copied: changing one leaves the other
    assert twin.set_params(contamination=None, train={"epochs": 5}) is twin
    assert (twin.contamination, twin.train, detector.train) == (None, {"epochs": 5}, {"epochs": 3})
    assert repr(Detector(train={"epochs": 3})).startswith("Detector(")
    assert not hasattr(clone(Detector()), "model_")
    with pytest.raises(ValueError, match="Invalid parameter epochs"):
        twin.set_params(epochs=5)


@pytest.fixture(scope="module")
def breast_cancer():
    """A real table, bundled with scikit-learn (no download): 357 benign tumours (normal) and
    212 malignant ones (anomalies), 30 features in their own units. Training: 250 benign rows;
    test: the other 107 and 40 malignant ones."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    benign, malignant = rng.permutation(np.flatnonzero(y == 1)), rng.permutation(np.flatnonzero(y == 0))
    test = np.r_[benign[250:], malignant[:40]]
    return x[benign[:250]], x[test], np.r_[np.zeros(107), np.ones(40)]


def test_a_pyod_users_script_runs_on_a_real_table(breast_cancer, tmp_path):
    """What PyOD's examples do with any detector, on the breast cancer table, then saving,
    loading and fitting a clone: the same calls, the same meanings."""
    X_train, X_test, y_test = breast_cancer
    clf = Detector(model={"hidden_dims": [32], "latent_dim": 4}, train={"epochs": 30, "device": "cpu"},
                   score={"elbo_samples": 2}, contamination=0.1)
    clf.fit(X_train)
    y_train_pred, y_train_scores = clf.labels_, clf.decision_scores_
    y_test_pred = clf.predict(X_test)
    y_test_scores = clf.decision_function(X_test)
    y_test_proba = clf.predict_proba(X_test)
    y_test_pred_again, confidence = clf.predict(X_test, return_confidence=True)

    assert abs(y_train_pred.mean() - 0.1) < 0.01  # contamination: 10 % of the training rows flagged
    assert np.array_equal(y_train_pred, (y_train_scores > clf.threshold_).astype(int))
    assert ranking_metrics(y_test, y_test_scores)["roc_auc"] > 0.9  # malignant rows score higher
    assert y_test_pred[y_test == 1].mean() > y_test_pred[y_test == 0].mean()
    assert y_test_proba.shape == (len(X_test), 2) and np.allclose(y_test_proba.sum(axis=1), 1)
    assert np.array_equal(y_test_pred_again, y_test_pred)
    # PyOD's own ExCeeD confidence (it applies to a numeric contamination) gives the same values.
    from pyod.models.base import BaseDetector
    np.testing.assert_allclose(confidence, BaseDetector.predict_confidence(clf, X_test))
    np.testing.assert_allclose(clf.predict_confidence(X_test), confidence)

    clf.save(tmp_path / "clf")
    loaded = Detector.load(tmp_path / "clf", "cpu")
    assert (loaded.contamination, loaded.threshold_) == (0.1, clf.threshold_)
    np.testing.assert_array_equal(loaded.decision_function(X_test), y_test_scores)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), y_test_proba)

    # A clone fits afresh to the same detector (same seed), and saves and loads as well.
    twin = clone(clf).fit(X_train)
    np.testing.assert_array_equal(twin.decision_function(X_test), y_test_scores)
    twin.save(tmp_path / "twin")
    np.testing.assert_array_equal(Detector.load(tmp_path / "twin", "cpu").predict(X_test), y_test_pred)


def test_without_contamination_the_threshold_section_decides(breast_cancer):
    """contamination=None (the default): the pipeline's rule, here the 95th percentile of the
    validation rows' scores; fit_predict gives the training rows' flags."""
    X_train, _, _ = breast_cancer
    detector = Detector(model={"hidden_dims": [16], "latent_dim": 2}, train={"epochs": 2, "device": "cpu"},
                        score={"names": ["reconstruction_mse"], "primary": "reconstruction_mse"},
                        threshold={"method": "percentile", "q": 95.0})
    flags = detector.fit_predict(X_train)
    assert np.array_equal(flags, detector.labels_) and flags.dtype == np.int64
    n_val = 25  # val_fraction 0.1 of 250 rows
    order = np.random.default_rng(0).permutation(len(X_train))
    val_scores = detector.decision_function(X_train[order[:n_val]])
    assert detector.threshold_ == pytest.approx(np.percentile(val_scores, 95.0), rel=1e-6)
    confidence = detector.predict_confidence(X_train)
    assert ((0 <= confidence) & (confidence <= 1)).all()

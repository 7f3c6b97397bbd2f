"""The PyOD baselines: fitted on training rows, scored on test rows, seeded; PyOD's VAE run
with its KL term switched on."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vae_anomaly.baselines import baseline_scores, build_detector, training_subsample


def small_params(names, **overrides):
    return {"names": names, "seed": 0, "max_train": 150, "knn_neighbors": 5, "hidden_dims": [16],
            "latent_dim": 2, "epochs": 3, "batch_size": 32, "on_error": "record", **overrides}


def data(seed=0):
    """Normal rows on a 2-D plane in 6-D; anomalies off it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 6))
    train = (rng.normal(size=(200, 2)) @ basis).astype(np.float32)
    normal = rng.normal(size=(60, 2)) @ basis
    anomalies = normal[:20] + rng.choice([-4.0, 4.0], size=(20, 6))
    test = np.concatenate([normal, anomalies]).astype(np.float32)
    return train, test, np.r_[np.zeros(60), np.ones(20)]


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setenv("CI", "1")  # no progress bars from PyOD's deep detectors


def test_every_baseline_ranks_clear_anomalies_above_normal_rows():
    train, test, labels = data()
    scores, record = baseline_scores(train, test, small_params(["iforest", "ecod", "knn", "autoencoder", "vae"]))
    assert record == {"n_fit": 150, "adaptations": {}, "failed": {}}
    assert list(scores) == ["iforest", "ecod", "knn", "autoencoder", "vae"]
    for name, s in scores.items():
        assert s.shape == (80,) and np.isfinite(s).all(), name
        assert roc_auc_score(labels, s) > 0.9, name


def test_seeded_runs_agree_and_images_are_flattened():
    rng = np.random.default_rng(0)
    train, test = rng.random((100, 1, 4, 4), dtype=np.float32), rng.random((30, 1, 4, 4), dtype=np.float32)
    params = small_params(["iforest", "vae"], epochs=1)
    (first, _), (second, _) = baseline_scores(train, test, params), baseline_scores(train, test, params)
    for name in params["names"]:
        np.testing.assert_array_equal(first[name], second[name])


def test_no_baselines_gives_no_scores():
    train, test, _ = data()
    assert baseline_scores(train, test, small_params([]))[0] == {}


def test_training_subsample_is_seeded_and_capped():
    np.testing.assert_array_equal(training_subsample(10, 20, 0), np.arange(10))
    rows = training_subsample(1000, 100, 0)
    assert len(np.unique(rows)) == 100 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, training_subsample(1000, 100, 0))


def test_pyod_vae_is_a_real_vae_whose_kl_counts():
    from pyod.models.vae import vae_loss

    detector = build_detector("vae", small_params(["vae"]), n_features=8, device="cpu")
    assert detector.capacity == math.inf and detector.beta == pytest.approx(1 / 8)
    x, recon = torch.zeros(4, 8), torch.full((4, 8), 0.5)
    mu, logvar = torch.ones(4, 2), torch.zeros(4, 2)  # KL = 0.5 * |mu|^2 = 1 per sample
    mse = 0.25
    # PyOD's default capacity 0 clamps the KL away; ours keeps it, weighted by beta = 1/D.
    assert vae_loss(x, recon, mu, logvar, beta=1.0).item() == pytest.approx(mse)
    got = vae_loss(x, recon, mu, logvar, beta=detector.beta, capacity=detector.capacity).item()
    assert got == pytest.approx(mse + 1 / 8)

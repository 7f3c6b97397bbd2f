"""The PyOD baselines: fitted on every training row, scored on test rows, seeded; the deep ones
on the VAE's budget with early stopping; PyOD's VAE run with its KL term switched on and
scored on its posterior mean; the model-free compressed length."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from vae_anomaly.evaluation.baselines import BASELINES, FIT_ORDER, baseline_scores, build_detector, deep_budget
from vae_anomaly.scoring.complexity import compressed_bits


def small_params(names, epochs=3, patience=8):
    """The params sections the baselines read: theirs, and the VAE's widths and budget."""
    return {
        "baselines": {"names": names, "seed": 0, "knn_neighbors": 5, "on_error": "record"},
        "model": {"hidden_dims": [16], "latent_dim": 2},
        "train": {"seed": 0, "epochs": epochs, "batch_size": 32, "lr": 1e-3, "patience": patience},
        "score": {"complexity_codec": "png"},
    }


def features(train, test, val=None):
    return {"train": train, "val": train[:20] if val is None else val, "test": test}


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
    scores, record, _ = baseline_scores(features(train, test), small_params(["iforest", "ecod", "knn", "autoencoder", "vae"]))
    assert record == {"n_fit": 200, "adaptations": {}, "failed": {}}
    assert list(scores) == ["iforest", "ecod", "knn", "autoencoder", "vae"]
    for name, s in scores.items():
        assert s.shape == (80,) and np.isfinite(s).all(), name
        assert roc_auc_score(labels, s) > 0.9, name


def test_seeded_runs_agree_and_images_are_flattened():
    rng = np.random.default_rng(0)
    train, test = rng.random((100, 1, 4, 4), dtype=np.float32), rng.random((30, 1, 4, 4), dtype=np.float32)
    params = small_params(["iforest", "vae"], epochs=1)
    (first, _, _), (second, _, _) = (baseline_scores(features(train, test), params) for _ in range(2))
    for name in params["baselines"]["names"]:
        np.testing.assert_array_equal(first[name], second[name])


def test_baselines_fitted_in_worker_processes_score_as_fitted_in_turn():
    """The stage fits one detector per core at a time (jobs): the same scores, in the order of
    baselines.names, and the same record (compressed_length fails on a table, in both)."""
    train, test, _ = data()
    params = small_params(["compressed_length", "iforest", "knn", "autoencoder", "vae"])
    scores, record, _ = baseline_scores(features(train, test), params)
    in_workers, record_in_workers, _ = baseline_scores(features(train, test), params, jobs=2)
    assert record_in_workers == record and list(record["failed"]) == ["compressed_length"]
    assert list(in_workers) == list(scores) == ["iforest", "knn", "autoencoder", "vae"]
    for name in scores:
        np.testing.assert_array_equal(in_workers[name], scores[name])


def test_no_baselines_gives_no_scores():
    train, test, _ = data()
    assert baseline_scores(features(train, test), small_params([]))[0] == {}


def test_deep_baselines_stop_early_on_the_validation_split_and_keep_the_best_epoch():
    train, test, _ = data()
    params = small_params(["autoencoder"], epochs=200, patience=2)
    budget = deep_budget(params, train[:50])
    detector = build_detector("autoencoder", params["baselines"], budget, (6,), "cpu")
    losses = []
    real = type(detector).validation_loss
    detector.validation_loss = lambda x: losses.append(real(detector, x)) or losses[-1]
    detector.fit(train.astype(np.float64))
    assert detector.epochs_run_ == len(losses) < 200
    best = int(np.argmin(losses))
    assert len(losses) - 1 - best == 2  # stopped after `patience` epochs without improvement
    with torch.no_grad():  # the weights of the best epoch were restored
        x_val = torch.as_tensor(budget["validation_data"], dtype=torch.float32)
        assert real(detector, x_val) == pytest.approx(losses[best], rel=1e-6)


def test_pyod_vae_is_scored_on_its_posterior_mean_without_sampling_noise():
    train, test, _ = data()
    params = small_params(["vae"])
    detector = build_detector("vae", params["baselines"], deep_budget(params, train[:20]), (6,), "cpu")
    detector.fit(train.astype(np.float64))
    first, second = detector.decision_function(test), detector.decision_function(test)
    np.testing.assert_array_equal(first, second)
    with torch.no_grad():
        mu, _ = detector.model.encode(torch.as_tensor(test, dtype=torch.float32))
        expected = np.linalg.norm(test - detector.model.decode(mu).numpy(), axis=1)
    np.testing.assert_allclose(first, expected, rtol=1e-5)


def test_compressed_length_is_minus_the_lossless_length_of_each_image():
    rng = np.random.default_rng(0)
    images = (rng.integers(0, 256, size=(6, 1, 8, 8)) / 255).astype(np.float32)
    images[:3] = 0.0  # blank images: the shortest codes, so the highest scores
    scores, _, _ = baseline_scores(features(images, images), small_params(["compressed_length"]))
    np.testing.assert_array_equal(scores["compressed_length"], -compressed_bits(images, "png"))
    assert scores["compressed_length"][:3].min() > scores["compressed_length"][3:].max()


def test_pyod_vae_is_a_real_vae_whose_kl_counts():
    from pyod.models.vae import vae_loss

    params = small_params(["vae"])
    detector = build_detector("vae", params["baselines"], deep_budget(params, np.zeros((4, 8))), (8,), "cpu")
    assert detector.capacity == math.inf and detector.beta == pytest.approx(1 / 8)
    x, recon = torch.zeros(4, 8), torch.full((4, 8), 0.5)
    mu, logvar = torch.ones(4, 2), torch.zeros(4, 2)  # KL = 0.5 * |mu|^2 = 1 per sample
    mse = 0.25
    # PyOD's default capacity 0 clamps the KL away; ours keeps it, weighted by beta = 1/D.
    assert vae_loss(x, recon, mu, logvar, beta=1.0).item() == pytest.approx(mse)
    got = vae_loss(x, recon, mu, logvar, beta=detector.beta, capacity=detector.capacity).item()
    assert got == pytest.approx(mse + 1 / 8)


def test_deep_baselines_batches_are_pyods_shuffled_full_batches_from_one_copy():
    from pyod.utils.stat_models import pairwise_distances_no_broadcast
    from pyod.utils.torch_utility import TorchDataset

    from vae_anomaly.evaluation.pyod_deep import row_distances, shuffled_batches

    x = np.arange(70 * 3, dtype=np.float64).reshape(70, 3)
    loader = torch.utils.data.DataLoader(TorchDataset(X=x), batch_size=32, shuffle=True, drop_last=True)
    torch.manual_seed(0)
    epochs = [list(shuffled_batches(loader)()) for _ in range(2)]
    for batches in epochs:
        assert [b.shape for b in batches] == [(32, 3), (32, 3)] and batches[0].dtype == torch.float32
        rows = torch.cat(batches)[:, 0].long() // 3
        assert len(set(rows.tolist())) == 64  # distinct rows of x, the last partial batch dropped
    assert not torch.equal(epochs[0][0], epochs[1][0])  # reshuffled each epoch
    standardised = torch.utils.data.DataLoader(TorchDataset(X=x, mean=x.mean(0), std=x.std(0)), batch_size=32)
    assert shuffled_batches(standardised)() is not None and next(iter(shuffled_batches(standardised)())).shape == (32, 3)
    a, b = np.random.default_rng(0).random((2, 50, 7), dtype=np.float32)
    np.testing.assert_allclose(row_distances(a, b), pairwise_distances_no_broadcast(a, b), rtol=1e-6)


def test_the_workers_order_names_every_baseline_once():
    # fitted_in_workers sorts by FIT_ORDER.index: a baseline missing there would stop the stage
    assert sorted(FIT_ORDER) == sorted(BASELINES)

import numpy as np
import pytest
import torch

from vae_anomaly.evaluation.metrics import latent_metrics, reconstruction_metrics
from vae_anomaly.model.vae import VAEConfig, build_model
from vae_anomaly.scoring.latent import (
    active_dims_by_alpha,
    active_dims_by_kl,
    fitted_w2,
    gaussian_w2,
    posterior_statistics,
    sparse_log_alpha,
)
from vae_anomaly.scoring.reconstruction import image_ssim, reconstruction_quality
from vae_anomaly.scoring.scores import compute_scores

from support import score_params


def test_w2_in_one_dimension_is_the_distance_of_means_and_stds():
    # 1-D: W2(N(m1, s1^2), N(m2, s2^2))^2 = (m1 - m2)^2 + (s1 - s2)^2
    got = gaussian_w2(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[0.25]]))
    assert got == pytest.approx(np.sqrt(3.0**2 + (2.0 - 0.5) ** 2))


def test_w2_of_diagonal_gaussians():
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.5])
    expected = np.sqrt(np.sum((m1 - m2) ** 2) + np.sum((s1 - s2) ** 2))
    assert gaussian_w2(m1, np.diag(s1**2), m2, np.diag(s2**2)) == pytest.approx(expected)


def test_w2_of_non_commuting_covariances_against_the_eigenvalue_form():
    # tr((S1^1/2 S2 S1^1/2)^1/2) = sum of the square roots of the eigenvalues of S1 S2
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    s1, s2 = a @ a.T + 0.1 * np.eye(3), b @ b.T + 0.1 * np.eye(3)
    m1, m2 = rng.normal(size=3), rng.normal(size=3)
    cross = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    expected = np.sqrt(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-8)
    assert gaussian_w2(m1, s1, m2, s2) == pytest.approx(gaussian_w2(m2, s2, m1, s1), rel=1e-8)
    assert gaussian_w2(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-6)


def test_fitted_w2_recovers_the_distance_of_the_sampled_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal([0.0, 0.0], [1.0, 1.0], size=(20_000, 2))
    b = rng.normal([3.0, 0.0], [2.0, 1.0], size=(20_000, 2))
    assert fitted_w2(a, b) == pytest.approx(np.sqrt(9.0 + 1.0), rel=0.02)
    assert fitted_w2(a[:, :1], b[:, :1]) == pytest.approx(np.sqrt(9.0 + 1.0), rel=0.02)  # 1-D latent
    assert fitted_w2(a[:1], b) is None


def test_active_dims():
    kl = np.array([[0.5, 0.0, 0.02], [0.7, 0.001, 0.0]])  # means 0.6, 0.0005, 0.01
    assert active_dims_by_kl(kl) == 1
    assert active_dims_by_kl(kl, threshold=0.005) == 2
    assert active_dims_by_alpha(np.array([-3.0, 0.2, 3.0, 3.1, 8.0])) == 3  # pruned: log alpha > 3


def test_sparse_log_alpha_is_noise_over_mean_signal_power():
    # sigma^2 = 1 in both dimensions; mu^2 = (4, 0) and (1/4, 4): alpha_ij = sigma^2 / mu_ij^2
    log_alpha = -np.log(np.array([[4.0, 0.25], [1e-8, 4.0]]))
    expected = np.log(1.0 / np.array([(4.0 + 1e-8) / 2, (0.25 + 4.0) / 2]))
    np.testing.assert_allclose(sparse_log_alpha(log_alpha), expected)
    assert sparse_log_alpha(np.full((3, 1), 50.0)) == pytest.approx([50.0])  # no overflow


@pytest.mark.parametrize("kind", ["vae", "ae", "sparse"])
def test_posterior_statistics_per_model_kind(kind):
    torch.manual_seed(0)
    model = build_model(VAEConfig([6], [8], 3, kind=kind))
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    stats = posterior_statistics(model, x, batch_size=4)
    assert stats["mu"].shape == (10, 3)
    np.testing.assert_allclose(stats["mu"], model.encode(torch.as_tensor(x))[0].detach().numpy(), rtol=1e-6)
    assert ("kl_per_dim" in stats) == (kind != "ae")
    assert ("log_alpha" in stats) == (kind == "sparse")
    if kind == "sparse":
        np.testing.assert_allclose(stats["log_alpha"], stats["logvar"] - np.log(stats["mu"] ** 2 + 1e-8))
    if kind == "vae":
        mu, logvar = stats["mu"], stats["logvar"]
        np.testing.assert_allclose(stats["kl_per_dim"], 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar), rtol=1e-5)


def test_latent_and_reconstruction_metrics_use_normal_samples():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mu = np.concatenate([square, square + [3.0, 4.0]])  # same covariance, means 5 apart: W2 = 5
    kl = np.array([[1.0, 0.0]] * 4 + [[9.0, 9.0]] * 4)  # normal samples use one dimension
    m = latent_metrics({"mu": mu, "kl_per_dim": kl}, labels)
    assert m == {"latent_dim": 2, "w2_normal_anomaly": pytest.approx(5.0),
                 "active_dims": 1, "active_dims_rule": "KL > 0.01 nats"}
    assert latent_metrics({"mu": mu}, labels)["active_dims"] is None  # plain autoencoder
    # Sparse VAE: by log alpha on normal samples only, whatever its KL says
    log_alpha = np.array([[-2.0, 9.0]] * 4 + [[9.0, -2.0]] * 4)
    m = latent_metrics({"mu": mu, "kl_per_dim": kl, "log_alpha": log_alpha}, labels)
    assert (m["active_dims"], m["active_dims_rule"]) == (1, "log alpha <= 3")
    assert m["log_alpha"] == pytest.approx([-2.0, 9.0])
    r = reconstruction_metrics({"mse": np.array([1.0, 2.0, 3.0, 6.0, 50.0, 60.0, 70.0, 80.0])}, labels)
    assert r == {"mse_normal": 3.0, "ssim_normal": None, "n_normal": 4}


def test_ssim_is_one_for_a_perfect_reconstruction_and_lower_otherwise():
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, 8, 8))
    assert image_ssim(images, images) == pytest.approx(np.ones(3))
    noisy = np.clip(images + 0.3 * rng.normal(size=images.shape), 0, 1)
    assert (image_ssim(images, noisy) < 0.9).all()


def test_reconstruction_quality_agrees_with_the_mse_score():
    torch.manual_seed(0)
    model = build_model(VAEConfig([1, 8, 8], [16], 2, likelihood="bernoulli"))
    x = np.random.default_rng(0).random((5, 1, 8, 8)).astype(np.float32)
    quality = reconstruction_quality(model, x, batch_size=2)
    score = compute_scores(model, x, score_params(["reconstruction_mse"], batch_size=2), seed=0)["reconstruction_mse"]
    np.testing.assert_allclose(quality["mse"], score)
    assert quality["ssim"].shape == (5,) and (quality["ssim"] < 1).all()
    tabular = reconstruction_quality(build_model(VAEConfig([6], [8], 2)), x.reshape(5, -1)[:, :6], 4)
    assert set(tabular) == {"mse"}

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vae_anomaly.data.splits import Splits
from vae_anomaly.data.synthetic import make_synthetic
from vae_anomaly.model.likelihoods import log_uniform_kl
from vae_anomaly.model.training import fit
from vae_anomaly.model.vae import SparseVAE, VAEConfig, build_model, load_model, save_model
from vae_anomaly.scoring.latent import PRUNED_LOG_ALPHA, active_dims_by_alpha, posterior_statistics, sparse_log_alpha


def molchanov_kl_reference(log_alpha: float) -> float:
    """Molchanov et al. (2017), eq. 14, written out with the math module."""
    k1, k2, k3 = 0.63576, 1.87320, 1.48695
    alpha = math.exp(log_alpha)
    neg_kl = k1 / (1 + math.exp(-(k2 + k3 * log_alpha))) - 0.5 * math.log(1 + 1 / alpha) - k1
    return -neg_kl


def exact_log_uniform_kl(log_alpha: float) -> float:
    """KL(N(mu, alpha mu^2) || log-uniform) by quadrature, with the additive constant that
    makes it vanish as alpha -> oo: KL = -0.5 log alpha + E[log|e|] + (gamma + log 2) / 2,
    e ~ N(1, alpha) (Molchanov et al. 2017, sec. 4.2)."""
    sd = math.exp(0.5 * log_alpha)

    def integrand(e: float) -> float:
        return math.log(abs(e)) * stats.norm.pdf(e, 1, sd)

    expected_log = sum(integrate.quad(integrand, lo, hi, limit=200)[0]
                       for lo, hi in ((-np.inf, 0), (0, np.inf)))
    return -0.5 * log_alpha + expected_log + (np.euler_gamma + math.log(2)) / 2


@pytest.mark.parametrize("log_alpha", [-6.0, -2.0, 0.0, 1.5, 4.0, 9.0])
def test_log_uniform_kl_matches_the_formula(log_alpha):
    got = log_uniform_kl(torch.tensor([log_alpha], dtype=torch.float64)).item()
    assert got == pytest.approx(molchanov_kl_reference(log_alpha), rel=1e-12)


@pytest.mark.parametrize("log_alpha", [-4.0, -1.0, 0.0, 2.0, 4.0])
def test_log_uniform_kl_approximates_the_exact_kl(log_alpha):
    got = log_uniform_kl(torch.tensor([log_alpha], dtype=torch.float64)).item()
    assert got == pytest.approx(exact_log_uniform_kl(log_alpha), abs=0.01)


def test_log_uniform_kl_is_finite_far_out_and_decreasing():
    log_alpha = torch.tensor([-200.0, -8.0, 0.0, 8.0, 200.0])
    kl = log_uniform_kl(log_alpha)
    assert torch.isfinite(kl).all()
    assert (kl[:-1] > kl[1:]).all()
    assert kl[-1].abs() < 1e-6  # all noise, no information: KL 0


def sparse_model(latent_dim=3):
    torch.manual_seed(0)
    return build_model(VAEConfig([6], [16], latent_dim, kind="sparse"))


def test_sparse_posterior_has_one_noise_variance_per_dimension():
    model = sparse_model()
    with torch.no_grad():
        model.log_noise_var.copy_(torch.tensor([-1.0, 0.5, 2.0]))
    mu, logvar = model.encode(torch.randn(5, 6))
    torch.testing.assert_close(logvar, model.log_noise_var.expand(5, 3))
    kl = model.kl_per_dim(mu, logvar)
    assert kl.shape == (5, 3)
    # alpha_ij = sigma_j^2 / mu_ij^2 (Molchanov et al. 2017, sec. 4.1)
    torch.testing.assert_close(kl, log_uniform_kl(logvar - torch.log(mu.pow(2) + 1e-8)))
    assert not hasattr(model, "to_logvar")


def test_sparse_kl_pays_for_signal_and_vanishes_without_it():
    model = sparse_model(latent_dim=1)
    logvar = torch.zeros(3, 1)
    kl = model.kl_per_dim(torch.tensor([[0.0], [1.0], [10.0]]), logvar).squeeze(1)
    assert kl[0] < 1e-6  # mu = 0: all noise, no information, no cost
    assert kl[0] < kl[1] < kl[2]


def test_sparse_vae_trains_its_noise_variance_and_round_trips(tmp_path):
    model = sparse_model()
    x = torch.randn(32, 6)
    recon, kl = model.loss_terms(x)
    (recon + kl).mean().backward()
    assert model.log_noise_var.grad is not None and (model.log_noise_var.grad != 0).all()
    save_model(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt")
    assert isinstance(loaded, SparseVAE)
    torch.testing.assert_close(loaded.log_noise_var, model.log_noise_var)
    torch.testing.assert_close(loaded.encode(x)[1], model.eval().encode(x)[1])


def factor_data(n_factors: int, seed: int) -> Splits:
    """Synthetic data with ``n_factors`` true latent factors and no anomalies."""
    cfg = {"n_features": 15, "latent_dim": n_factors, "noise_std": 0.3, "n_train": 1000, "n_val": 200,
           "n_test": 2, "anomalies": []}
    return make_synthetic(cfg, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_vae_keeps_the_true_factors_and_prunes_the_rest(seed):
    data = factor_data(n_factors=3, seed=seed)
    torch.manual_seed(seed)
    model = build_model(VAEConfig([15], [32], 8, kind="sparse"))
    train = {"seed": seed, "epochs": 30, "batch_size": 64, "lr": 3e-3, "kl_schedule": "constant", "patience": 30}
    fit(model, data.train, data.val, 1.0, train, torch.device("cpu"))
    log_alpha = sparse_log_alpha(posterior_statistics(model, data.val, 512)["log_alpha"])
    assert active_dims_by_alpha(log_alpha) == 3, log_alpha
    # the pruned dimensions are far past the cut-off, the kept ones far below it
    assert np.sort(log_alpha)[3] > PRUNED_LOG_ALPHA + 0.5 and np.sort(log_alpha)[2] < 0, log_alpha

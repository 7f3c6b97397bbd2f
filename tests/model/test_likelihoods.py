"""Each column in its own likelihood, and missing entries left out: against hand computations."""
import math

import numpy as np
import pytest
import torch

from vae_anomaly.model.likelihoods import gaussian_nll, table_nll
from vae_anomaly.model.vae import VAE, VAEConfig
from vae_anomaly.scoring.scores import negative_elbo, reconstruction_mse

NAN = float("nan")
HALF_LOG_PI = 0.5 * math.log(math.pi)


def test_numbers_are_gaussian_categories_softmax_and_a_gap_counts_nothing():
    # columns: a number (input 0), a category of three (inputs 1-3), a number (input 4)
    blocks = [[1, 3]]
    output = torch.tensor([[0.5, 1.0, 2.0, 0.0, -1.0]] * 4)
    x = torch.tensor([
        [1.5, 0.0, 1.0, 0.0, -1.0],  # complete: category 1
        [NAN, 1.0, 0.0, 0.0, 0.0],  # the first number missing
        [1.5, NAN, NAN, NAN, -1.0],  # the category missing
        [1.5, 0.0, 0.0, 0.0, -1.0],  # a category unseen in training: a block of zeros
    ])
    log_p = torch.log_softmax(torch.tensor([1.0, 2.0, 0.0]), dim=0)
    expected = torch.tensor([
        (1.5 - 0.5) ** 2 + HALF_LOG_PI + (-1 - -1) ** 2 + HALF_LOG_PI - log_p[1],
        (0 - -1) ** 2 + HALF_LOG_PI - log_p[0],
        1.0 + 2 * HALF_LOG_PI,
        1.0 + 2 * HALF_LOG_PI - log_p.min(),  # as surprising as the least likely category
    ])
    torch.testing.assert_close(table_nll(x, output, blocks), expected)


def test_on_complete_numbers_it_is_the_gaussian_likelihood_and_the_model_uses_that_one():
    x, output = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.zeros(6, 5)
    torch.testing.assert_close(table_nll(x, output, []), gaussian_nll(x, output))
    model = VAE(VAEConfig([5], [8], 2))
    assert torch.equal(model.nll(x, output), gaussian_nll(x, output))  # the same bits as before gaps existed


def test_a_gap_gets_no_gradient_and_training_on_gaps_stays_finite():
    x = torch.tensor([[NAN, 1.0], [2.0, NAN]])
    output = torch.zeros(2, 2, requires_grad=True)
    table_nll(x, output, []).sum().backward()
    assert torch.equal(output.grad, torch.tensor([[0.0, -2.0], [-4.0, 0.0]]))


def test_the_masked_elbo_and_error_of_a_row_are_those_of_its_held_entries():
    """negative_elbo of a row with a gap equals that of the same model's row restricted to
    the held entries, up to what the encoder sees (0 for the gap), by hand: the decoder's
    Gaussian over the held entries plus the KL."""
    torch.manual_seed(0)
    model = VAE(VAEConfig([4], [8], 2)).eval()
    x = torch.tensor([[0.3, NAN, -1.2, 0.8]])
    filled = torch.nan_to_num(x, nan=0.0)
    with torch.no_grad():
        mu, logvar = model.encode(filled)
        assert torch.equal(mu, model.encode(x)[0])  # the gap reaches the encoder as 0
        z = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(3)) * torch.exp(0.5 * logvar)
        out = model.decode(z)
        held = torch.tensor([0, 2, 3])
        by_hand = (x[0, held] - out[0, held]).pow(2).sum() + 3 * HALF_LOG_PI + model.kl(mu, logvar)[0]
        got = negative_elbo(model, x, torch.Generator().manual_seed(3), n_samples=1)
        torch.testing.assert_close(got, by_hand.reshape(1))
        mean = model.decode(mu)
        error = reconstruction_mse(model, x, torch.Generator())
        torch.testing.assert_close(error, (x[0, held] - mean[0, held]).pow(2).mean().reshape(1))


def test_a_category_block_reconstructs_as_probabilities():
    model = VAE(VAEConfig([4], [8], 2, categorical=[[1, 3]])).eval()
    with torch.no_grad():
        mean = model.mean(model.decode(torch.zeros(1, 2)))
    assert float(mean[0, 1:].sum()) == pytest.approx(1.0) and (mean[0, 1:] > 0).all()
    assert np.isfinite(mean.numpy()).all()


def test_an_unseen_category_is_as_far_off_as_the_least_likely_one():
    model = VAE(VAEConfig([4], [8], 2, categorical=[[1, 3]])).eval()
    with torch.no_grad():
        x = torch.tensor([[0.2, 0.0, 0.0, 0.0]])
        output = model.decode(model.encode(x)[0])
        p = model.mean(output)[0, 1:]
        least = torch.zeros(3)
        least[p.argmin()] = 1.0
        torch.testing.assert_close(model.residual(x, output)[0, 1:], least - p)

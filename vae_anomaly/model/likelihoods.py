"""Likelihoods of the decoder p(x|z):
- ``gaussian``: fixed variance 1/2, so -log N(x; x_hat, 1/2 I) = ||x - x_hat||^2 + (D/2) log(pi);
  the training loss "MSE + beta * KL" is then, up to that constant, the beta-weighted
  negative ELBO (Kingma & Welling 2014, eq. 10; Higgins et al. 2017 for beta).
- ``bernoulli``: for pixels in [0, 1]; -log p(x|z) is the summed binary cross-entropy with
  the decoder's logits, as in Kingma & Welling 2014, app. C.1 and pytorch/examples vae. On
  grey levels this is not a normalised distribution over the images' values.
- ``discretized_logistic``: for 8-bit images (pixels k/255); a logistic per pixel whose mass
  is binned onto the 256 intensities (Salimans et al. 2017, PixelCNN++, sec. 2.1, one
  component), so -log p(x|z) is a code length of the 8-bit image: the likelihood that the
  complexity correction of Serra et al. 2020 compares with a compressor's length.

The KL of a Gaussian posterior to the N(0, I) prior, and of the Sparse VAE's variational-dropout
posterior to its log-uniform prior, are here too.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def gaussian_nll(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample -log N(x; x_hat, 1/2 I): summed squared error plus (D/2) log(pi)."""
    sse = (x - x_hat).pow(2).flatten(1).sum(dim=1)
    return sse + 0.5 * x[0].numel() * math.log(math.pi)


def bernoulli_nll(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-sample -log Bernoulli(x; sigmoid(logits)), summed over pixels (BCE)."""
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return bce.flatten(1).sum(dim=1)


# Discretised logistic: 256 intensities k/255 on [0, 1], each the centre of a bin of width 1/255.
INTENSITY_LEVELS = 256
_HALF_BIN = 0.5 / (INTENSITY_LEVELS - 1)
# Floor of the log scale: a logistic of scale e^-8 centred on an intensity puts 99.4 % of its
# mass in that intensity's bin (half-width 1/510 = 5.9 scales), so a narrower one gains
# nothing; the floor keeps 1/scale finite (PixelCNN++ clamps at -7 on [-1, 1], the same
# ratio to its bins of width 2/255).
MIN_LOG_SCALE = -8.0


def discretized_logistic_log_prob(
    x: torch.Tensor, location_logit: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per value under a logistic with location sigmoid(``location_logit``) and scale
    exp(``log_scale``), discretised to the 256 intensities of [0, 1] (Salimans et al. 2017,
    PixelCNN++, eq. 2, one component): the bin of k/255 has the logistic's mass within half
    a bin of it, and the end bins take the tails, so the 256 probabilities sum to one.
    ``x`` is rounded to the nearest intensity. Written out (torch.distributions has no
    discretised logistic) in the numerically stable form of the authors' code."""
    x = torch.round(x * (INTENSITY_LEVELS - 1)) / (INTENSITY_LEVELS - 1)
    location = torch.sigmoid(location_logit)
    log_scale = log_scale.clamp(min=MIN_LOG_SCALE)
    inv_scale = torch.exp(-log_scale)
    upper = inv_scale * (x + _HALF_BIN - location)
    lower = inv_scale * (x - _HALF_BIN - location)
    log_cdf_upper = -F.softplus(-upper)  # log sigmoid(upper): the lowest bin, 0
    log_survival_lower = -F.softplus(lower)  # log(1 - sigmoid(lower)): the highest bin, 1
    mass = torch.sigmoid(upper) - torch.sigmoid(lower)
    # Where the bin's mass underflows, the density at its centre times the bin width.
    centre = inv_scale * (x - location)
    log_density_mass = centre - log_scale - 2.0 * F.softplus(centre) + math.log(2 * _HALF_BIN)
    log_mass = torch.where(mass > 1e-5, torch.log(mass.clamp(min=1e-12)), log_density_mass)
    return torch.where(
        x < _HALF_BIN, log_cdf_upper, torch.where(x > 1 - _HALF_BIN, log_survival_lower, log_mass)
    )


def discretized_logistic_nll(
    x: torch.Tensor, location_logit: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Per-sample -log p(x|z) in nats of an 8-bit image: the code length of its 256-level values."""
    return -discretized_logistic_log_prob(x, location_logit, log_scale).flatten(1).sum(dim=1)


def kl_to_standard_normal_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_j, exp(logvar_j)) || N(0, 1)) per dimension (Kingma & Welling 2014, app. B)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-sample KL(N(mu, diag exp(logvar)) || N(0, I))."""
    return kl_to_standard_normal_per_dim(mu, logvar).sum(dim=1)


# Molchanov, Ashukha & Vetrov (2017), "Variational Dropout Sparsifies Deep Neural Networks",
# ICML, eq. 14: -KL(N(theta, alpha theta^2) || log-uniform) is approximated by
# k1 sigmoid(k2 + k3 log alpha) - 0.5 log(1 + 1/alpha) + C with C = -k1, so KL -> 0 as alpha -> oo.
MOLCHANOV_K1, MOLCHANOV_K2, MOLCHANOV_K3 = 0.63576, 1.87320, 1.48695


def log_uniform_kl(log_alpha: torch.Tensor) -> torch.Tensor:
    """Approximate KL(N(mu, alpha mu^2) || log-uniform prior) per entry of ``log_alpha``."""
    k1, k2, k3 = MOLCHANOV_K1, MOLCHANOV_K2, MOLCHANOV_K3
    # softplus(-x) = log(1 + exp(-x)) = log(1 + 1/alpha), without overflow for very negative x
    neg_kl = k1 * torch.sigmoid(k2 + k3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - k1
    return -neg_kl


def table_nll(x: torch.Tensor, output: torch.Tensor, categorical: list[list[int]]) -> torch.Tensor:
    """Per-sample -log p(x|z) of a table row whose columns each have their own likelihood
    (Nazabal et al. 2020, "Handling incomplete heterogeneous data using VAEs", sec. 3): a
    number, N(x; x_hat, 1/2) as :func:`gaussian_nll`; a category (its one-hot block
    [start, width] of ``categorical``), -log softmax(logits)[category], or for a category
    unseen in training (a block of zeros) that of the column's least likely category.
    A missing entry (NaN) is left out of the sum, as in MIWAE (Mattei & Frellsen 2019), so
    the row is scored on what it holds; on a complete row of numbers this equals gaussian_nll."""
    observed = ~torch.isnan(x)
    values = torch.nan_to_num(x, nan=0.0)  # finite everywhere, so masked terms have zero gradient
    numeric = torch.ones(x.shape[1], dtype=torch.bool, device=x.device)
    for start, width in categorical:
        numeric[start:start + width] = False
    counted = observed & numeric
    nll = ((values - output).pow(2) * counted).sum(dim=1) + 0.5 * math.log(math.pi) * counted.sum(dim=1)
    for start, width in categorical:
        target = values[:, start:start + width]
        log_p = F.log_softmax(output[:, start:start + width], dim=1)
        known = target.sum(dim=1) > 0
        category = torch.where(known, -(target * log_p).sum(dim=1), -log_p.min(dim=1).values)
        nll = nll + torch.where(observed[:, start], category, torch.zeros_like(category))
    return nll

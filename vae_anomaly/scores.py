"""Per-sample anomaly scores: the higher, the more anomalous.

- ``reconstruction_mse``: squared error of the reconstruction from the posterior mean;
- ``negative_elbo``: the single-bound -ELBO, averaged over posterior samples;
- ``iwae``: the importance-weighted bound on -log p(x) with K samples (Burda et al. 2016);
- ``complexity_corrected``: -log2 p(x) minus the image's compressed length in bits (Serra et al. 2020);
- ``kl_to_prior``: KL(q(z|x) || p(z)), how far the posterior moves from the prior;
- ``latent_mahalanobis``: the Mahalanobis distance of the posterior mean under a Gaussian
  fitted to the training split's posterior means (:func:`fit_training_codes`).

Likelihood scores fail on inputs simpler than the training data: a VAE trained on
Fashion-MNIST without trousers gives trousers a *higher* likelihood than normal images
(Nalisnick et al. 2019, "Do deep generative models know what they don't know?", ICLR).
The complexity correction avoids that failure; the latent scores are measured beside it
(docs/results.md, "Scores and baselines").
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
from sklearn.covariance import EmpiricalCovariance
from tqdm import tqdm

from .io import show_progress
from .models import VAE
from .params import VAE_ONLY_SCORES

LOG_2PI = math.log(2 * math.pi)


def reconstruction_mse(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the reconstruction from the posterior mean (no sampling)."""
    mu, _ = model.encode(x)
    return (x - model.mean(model.decode(mu))).pow(2).flatten(1).mean(dim=1)


def negative_elbo(
    model: VAE, x: torch.Tensor, generator: torch.Generator, n_samples: int = 1
) -> torch.Tensor:
    """-ELBO(x) = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), the expectation over ``n_samples``
    posterior samples. An upper bound on -log p(x) (Kingma & Welling 2014, eq. 3)."""
    mu, logvar = model.encode(x)
    recon = torch.stack([
        model.nll(x, model.decode(model.reparameterize(mu, logvar, generator)))
        for _ in range(n_samples)
    ]).mean(dim=0)
    return recon + model.kl(mu, logvar)


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last (latent) dimension: the prior log p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


def log_diagonal_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension: the posterior log q(z|x)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(dim=-1)


def require_vae(model: VAE, score: str) -> None:
    """The scores of VAE_ONLY_SCORES need the Gaussian posterior q(z|x) and N(0, I) prior of
    model.kind 'vae': a plain autoencoder has no posterior variance, and the Sparse VAE's
    log-uniform prior is improper, so an importance weight p(z) / q(z|x) means nothing there."""
    if model.config.kind != "vae":
        raise ValueError(
            f"the {score} score needs a VAE with a Gaussian posterior and a N(0, I) prior "
            f"(model.kind = 'vae'), not model.kind = {model.config.kind!r}"
        )


def iwae(model: VAE, x: torch.Tensor, generator: torch.Generator, k: int) -> torch.Tensor:
    """Per-sample -log p^_K(x) in nats: the negative importance-weighted bound with ``k`` samples.

    Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders", ICLR), eq. 8:
    L_K(x) = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_1..z_K ~ q(z|x) independently.
    -L_K(x) is an upper bound on -log p(x) that does not loosen on average as K grows
    (their Theorem 1); K = 1 is the single-sample -ELBO with the KL estimated by Monte Carlo.
    All K samples of all rows go through the decoder as one batch of K * N.
    """
    require_vae(model, "iwae")
    mu, logvar = model.encode(x)
    shape = (k, *mu.shape)
    z = model.reparameterize(mu.expand(shape), logvar.expand(shape), generator)  # (K, N, L)
    output = model.decode(z.flatten(0, 1))
    log_likelihood = -model.nll(x.expand(k, *x.shape).flatten(0, 1), output).view(k, -1)
    log_weights = log_likelihood + log_standard_normal(z) - log_diagonal_normal(z, mu, logvar)
    return -(torch.logsumexp(log_weights, dim=0) - math.log(k))


# Lossless codecs for the complexity L(x), by score.complexity_codec: Pillow's format and options.
# JPEG 2000 (reversible 5/3 wavelet, raw codestream) and PNG are two of the compressors of
# Serra et al. 2020; on MNIST with digit 1 held out JPEG 2000 ranked better (docs/results.md).
CODECS = {
    "jpeg2000": ("JPEG2000", {"irreversible": False, "no_jp2": True}),
    "png": ("PNG", {"compress_level": 9}),
}


def compressed_bits(images: np.ndarray, codec: str = "jpeg2000") -> np.ndarray:
    """Complexity L(x) of each image (N, C, H, W) in [0, 1]: its length in bits when
    quantised to 8 bits and compressed losslessly by ``codec`` (Pillow), as in Serra et al.
    2020, sec. 3. One channel is saved as greyscale, three as RGB."""
    from PIL import Image  # imported here: only image scores need it

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"compressed_bits needs images (N, 1 or 3, H, W), got shape {images.shape}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError("compressed_bits needs pixel intensities in [0, 1]")
    image_format, options = CODECS[codec]
    pixels = np.rint(images * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # (N, H, W, C)
    bits = np.empty(len(pixels))
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            buffer, format=image_format, **options
        )
        bits[i] = 8 * buffer.getbuffer().nbytes
    return bits


def complexity_corrected(
    negative_log_likelihood: torch.Tensor, x: torch.Tensor, codec: str = "jpeg2000"
) -> torch.Tensor:
    """S(x) = -log2 p(x) - L(x) in bits (Serra et al. 2020, "Input complexity and
    out-of-distribution detection with likelihood-based generative models", ICLR, sec. 3).

    ``negative_log_likelihood`` is -log p(x) in nats (here the ``iwae`` bound), converted to
    bits by dividing by ln 2; L(x) is :func:`compressed_bits` with ``codec``. With the
    Bernoulli likelihood on grey levels, -log p(x) is a cross-entropy rather than the code
    length of the 8-bit image, so the two terms are not strictly on the same scale: L(x)
    varies more between images and dominates the ranking (docs/results.md, "Scores and baselines").
    """
    complexity = torch.as_tensor(compressed_bits(x.cpu().numpy(), codec), dtype=negative_log_likelihood.dtype)
    return negative_log_likelihood / math.log(2) - complexity.to(negative_log_likelihood.device)


def kl_to_prior(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """KL(q(z|x) || p(z)) in nats: the information the posterior carries about x
    (closed form for Gaussians, Kingma & Welling 2014, app. B)."""
    require_vae(model, "kl_to_prior")
    return model.kl(*model.encode(x))


@torch.no_grad()
def fit_training_codes(model: VAE, x_train: np.ndarray, batch_size: int) -> EmpiricalCovariance:
    """A Gaussian (mean, maximum-likelihood covariance) fitted to the posterior means of the
    training split: the reference of ``latent_mahalanobis``, never fitted on test data."""
    model.eval()
    device = next(model.parameters()).device
    xt = torch.as_tensor(x_train)
    codes = np.concatenate([
        model.encode(xt[start : start + batch_size].to(device))[0].cpu().numpy()
        for start in range(0, len(xt), batch_size)
    ])
    return EmpiricalCovariance().fit(codes.astype(np.float64))


def latent_mahalanobis(model: VAE, x: torch.Tensor, training_codes: EmpiricalCovariance) -> torch.Tensor:
    """Squared Mahalanobis distance of the posterior mean of x to the training codes'
    Gaussian, (mu - m)^T S^-1 (mu - m) (as in Lee et al. 2018, "A simple unified framework
    for detecting out-of-distribution samples", NeurIPS, applied to the VAE's latent space);
    scikit-learn's pseudo-inverse keeps it finite when S is singular."""
    mu, _ = model.encode(x)
    return torch.as_tensor(training_codes.mahalanobis(mu.cpu().numpy().astype(np.float64)))


@torch.no_grad()
def compute_scores(
    model: VAE,
    x: np.ndarray,
    names: list[str],
    batch_size: int,
    elbo_samples: int,
    seed: int,
    iwae_samples: int = 50,
    training_codes: EmpiricalCovariance | None = None,
    complexity_codec: str = "jpeg2000",
) -> dict[str, np.ndarray]:
    """Each named score for every row of ``x``, batched; seeded so reruns agree exactly.

    Each sampled score draws from its own generator, seeded with ``seed``, so its values do
    not depend on which other scores are configured. ``complexity_corrected`` reuses the
    ``iwae`` bound of the same batch. ``latent_mahalanobis`` needs ``training_codes``.
    """
    if "latent_mahalanobis" in names and training_codes is None:
        raise ValueError("latent_mahalanobis needs training_codes (fit_training_codes on the train split)")
    for name in set(names) & set(VAE_ONLY_SCORES):
        require_vae(model, name)
    device = next(model.parameters()).device
    model.eval()
    generators = {name: torch.Generator(device=device).manual_seed(seed) for name in ("elbo", "iwae")}
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    xt = torch.as_tensor(x)
    batches = range(0, len(xt), batch_size)
    for start in tqdm(batches, desc="score", unit="batch", disable=not show_progress()):
        xb = xt[start : start + batch_size].to(device)
        bound: torch.Tensor | None = None
        if {"iwae", "complexity_corrected"} & set(names):
            bound = iwae(model, xb, generators["iwae"], iwae_samples)
        scorers: dict[str, Callable[[], torch.Tensor]] = {
            "reconstruction_mse": lambda: reconstruction_mse(model, xb, generators["elbo"]),
            "negative_elbo": lambda: negative_elbo(model, xb, generators["elbo"], elbo_samples),
            "iwae": lambda: bound,
            "complexity_corrected": lambda: complexity_corrected(bound, xb, complexity_codec),
            "kl_to_prior": lambda: kl_to_prior(model, xb, generators["elbo"]),
            "latent_mahalanobis": lambda: latent_mahalanobis(model, xb, training_codes),
        }
        for name in names:
            out[name].append(scorers[name]().cpu().numpy())
    return {name: np.concatenate(parts).astype(np.float64) for name, parts in out.items()}

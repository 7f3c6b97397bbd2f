"""Per-sample anomaly scores, the higher the more anomalous: the function of each score in
the registry (registry.py says what each needs), and :func:`compute_scores`, which computes
those the ``score`` params section names, batch by batch.

- ``reconstruction_mse``: squared error of the reconstruction from the posterior mean;
- ``smoothed_reconstruction_mse``: images only: the same error after a Gaussian low-pass of
  the residual, so that it measures structure rather than fine texture;
- ``ssim_error``: images only: 1 - the structural similarity (SSIM) of the image and its
  reconstruction, which compares local means, contrasts and correlations rather than pixels;
- ``hog_error``: images only: the squared distance of the histograms of oriented gradients
  (HOG) of the image and its reconstruction: the local edge directions they disagree on;
- ``negative_elbo``: the single-bound -ELBO, averaged over posterior samples;
- ``iwae``: the importance-weighted bound on -log p(x) with K samples (Burda et al. 2016);
- ``complexity_corrected``: -log2 p(x) minus the image's compressed length in bits (Serra et al.
  2020), with the discretised logistic likelihood (a code length of the 8-bit image);
- ``likelihood_regret``: how much the ELBO of x improves when its posterior is fitted to x
  alone rather than given by the encoder (Xiao, Yan & Amit 2020);
- ``kl_to_prior``: KL(q(z|x) || p(z)), how far the posterior moves from the prior;
- ``latent_mahalanobis``: the Mahalanobis distance of the posterior mean under a Gaussian
  fitted to the training split's posterior means;
- ``latent_knn``: the distance of the posterior mean to its k-th nearest training posterior mean;
- ``latent_residual_knn``: the distance to the k-th nearest training sample in the VAE's own
  coordinates: where on the learned manifold (posterior mean) and how far off it (the
  reconstruction residual, whitened with the training residuals' covariance);
- ``joint_knn``: the mean distance to the k nearest training samples in those coordinates
  with the input itself beside them (the tables' recommendation: docs/suite.md).

The last four compare a sample with the training split (reference.fit_reference), never with
other test samples.

- ``combined``: the mean of the scores named in ``score.combine``, each standardised by the
  median and interquartile range of its values on the validation split
  (``combination.fit_combination``).

Likelihood scores fail on inputs simpler than the training data: a VAE trained on
Fashion-MNIST without trousers gives trousers a *higher* likelihood than normal images
(Nalisnick et al. 2019, "Do deep generative models know what they don't know?", ICLR).
The complexity correction avoids that failure; the latent scores are measured beside it
(docs/results.md, "Scores and baselines").
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..model.batches import batches, model_device
from ..model.optim import FusedAdam
from ..model.vae import VAE
from .combination import combined
from .complexity import compressed_bits
from .reference import TrainingReference, joint_coordinates, kth_neighbor_distance, mean_neighbor_distance
from .registry import COMBINED, GENERATORS, SCORES, model_problem

LOG_2PI = math.log(2 * math.pi)


def reconstruction_mse(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the reconstruction from the posterior mean (no sampling), over the
    entries x holds (a missing one is left out)."""
    mu, _ = model.encode(x)
    squared = model.residual(x, model.decode(mu)).pow(2).flatten(1)
    if model.has_missing(x):
        return squared.sum(dim=1) / (~torch.isnan(x)).sum(dim=1).clamp(min=1)
    return squared.mean(dim=1)


# The low-pass of smoothed_reconstruction_mse, in pixels: chosen among 0.5, 1, 1.5 and 2 on the
# development halves of one-class Fashion-MNIST (docs/suite.md), where 1 and 1.5 tied.
SMOOTHING_SIGMA = 1.0


def smoothed_reconstruction_mse(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the residual x - x_hat(mu) after a Gaussian low-pass over each
    image's height and width (scipy.ndimage, sigma SMOOTHING_SIGMA pixels).

    A VAE reproduces the shapes of normal images but not their fine texture, so the per-pixel
    error of a normal image is mostly high-frequency residue, and an anomaly whose shape is
    wrong is ranked among normal images with much texture. Smoothing the residual before
    squaring keeps the structure and averages the texture out: the argument of Bergmann et al.
    (2019, "Improving unsupervised defect segmentation by applying structural similarity to
    autoencoders", VISAPP) against the plain L2 error of autoencoders, with a low-pass instead
    of SSIM. On the development halves of one-class Fashion-MNIST it ranked better than the
    plain error, and than SSIM's (docs/suite.md)."""
    squared = smoothed_squared_residual(model, x)
    return torch.as_tensor(squared.reshape(len(x), -1).mean(axis=1))


def smoothed_squared_residual(model: VAE, x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) the squared residual x - x_hat(mu) after the low-pass of
    smoothed_reconstruction_mse, pixel by pixel: the score is its mean."""
    from scipy.ndimage import (
        gaussian_filter,  # imported here: only image scores need it
    )

    if x.dim() != 4:
        raise ValueError(f"smoothed_reconstruction_mse needs images (N, C, H, W), got shape {tuple(x.shape)}")
    mu, _ = model.encode(x)
    residual = (x - model.mean(model.decode(mu))).detach().cpu().numpy()
    return np.square(gaussian_filter(residual, sigma=(0, 0, SMOOTHING_SIGMA, SMOOTHING_SIGMA)))


# SSIM's Gaussian window, in pixels: Wang et al. (2004)'s 1.5, an 11-pixel window, which
# Bergmann et al. (2019) use for autoencoder residuals.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11


def ssim_error(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """1 - the mean structural similarity (SSIM; Wang et al. 2004, scikit-image) of each image
    and its reconstruction from the posterior mean, over the image's pixels and channels, with
    SSIM's Gaussian window (:func:`image_ssim`).

    SSIM compares each pixel's neighbourhood by its mean, its contrast and the correlation of
    the two images there, so a stroke or an edge that the reconstruction misses counts whatever
    its brightness, where the squared error counts brightness. Beside ``latent_knn``,
    ``smoothed_reconstruction_mse`` and ``hog_error`` it is the one-class recipe (docs/suite.md);
    alone it ranks below the smoothed error on Fashion-MNIST."""
    if x.dim() != 4:
        raise ValueError(f"ssim_error needs images (N, C, H, W), got shape {tuple(x.shape)}")
    mu, _ = model.encode(x)
    recon = model.mean(model.decode(mu))
    return torch.as_tensor(1.0 - image_ssim(x.cpu().numpy(), recon.cpu().numpy(), gaussian=True))


def image_ssim(images: np.ndarray, reconstructions: np.ndarray, gaussian: bool = False) -> np.ndarray:
    """SSIM (Wang et al. 2004, scikit-image) of each (C, H, W) image in [0, 1] with its
    reconstruction, averaged over the channels: with scikit-image's default uniform 7x7 window,
    or (``gaussian``) the Gaussian of SSIM_SIGMA pixels in an SSIM_WINDOW window; an image
    smaller than the window is compared with the largest odd window that fits."""
    from skimage.metrics import structural_similarity  # imported here: only image scores need it

    _, channels, height, width = images.shape
    side = min(height, width)
    window = {"gaussian_weights": True, "sigma": SSIM_SIGMA, "use_sample_covariance": False} if gaussian else {}
    win_size = min(SSIM_WINDOW if gaussian else 7, side if side % 2 else side - 1)
    return np.array([
        structural_similarity(
            a[0] if channels == 1 else a, b[0] if channels == 1 else b, data_range=1.0,
            win_size=win_size, channel_axis=None if channels == 1 else 0, **window,
        )
        for a, b in zip(images.astype(np.float64), reconstructions.astype(np.float64))
    ])


# HOG's cells, in pixels, and its normalisation blocks, in cells (Dalal & Triggs 2005's 9
# orientations and 2 x 2 blocks); 4-pixel cells on 28 x 28 images, chosen on the development
# halves of one-class Fashion-MNIST (docs/suite-levers.md). Smaller images get the largest cells
# that still make one block.
HOG_CELL = 4
HOG_BLOCK = 2
HOG_ORIENTATIONS = 9


def hog_error(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The squared Euclidean distance of the histograms of oriented gradients (HOG; Dalal &
    Triggs 2005, scikit-image) of each image and of its reconstruction from the posterior mean
    (:func:`image_hog`).

    HOG counts, in each cell of a few pixels, how much edge runs in each direction, normalised
    over blocks of cells: an edge the reconstruction misses, adds or turns counts whatever its
    contrast, and a shift within a cell barely moves it. Beside ``smoothed_reconstruction_mse``,
    ``ssim_error`` and ``latent_knn`` it is the one-class recipe (docs/suite.md); alone it ranks
    below each of them."""
    if x.dim() != 4:
        raise ValueError(f"hog_error needs images (N, C, H, W), got shape {tuple(x.shape)}")
    mu, _ = model.encode(x)
    recon = model.mean(model.decode(mu))
    difference = image_hog(x.cpu().numpy()) - image_hog(recon.cpu().numpy())
    return torch.as_tensor(np.square(difference).sum(axis=1))


def image_hog(images: np.ndarray) -> np.ndarray:
    """The HOG descriptor of each (C, H, W) image (scikit-image: HOG_ORIENTATIONS orientations,
    cells of HOG_CELL pixels or, in an image under 2 * HOG_CELL pixels a side, the largest that
    make one HOG_BLOCK x HOG_BLOCK block; colour by the strongest channel's gradient at each
    pixel, scikit-image's rule)."""
    from skimage.feature import hog  # imported here: only image scores need it

    _, channels, height, width = images.shape
    cell = min(HOG_CELL, min(height, width) // HOG_BLOCK)
    if cell < 1:
        raise ValueError(f"hog_error needs images of at least {HOG_BLOCK} x {HOG_BLOCK} pixels, got {height} x {width}")
    options = {"orientations": HOG_ORIENTATIONS, "pixels_per_cell": (cell, cell), "cells_per_block": (HOG_BLOCK,) * 2,
               "channel_axis": None if channels == 1 else 0}
    return np.array([hog(image[0] if channels == 1 else image, **options) for image in images.astype(np.float64)])


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


def require_model(model: VAE, name: str) -> None:
    """Refuse to compute the score ``name`` with a model that cannot give it (the registry's
    rule, registry.model_problem, which params validation applies too)."""
    problem = model_problem(name, model.config.kind, model.config.likelihood)
    if problem:
        raise ValueError(f"the {name} score {problem}")


def log_standard_normal(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last (latent) dimension: the prior log p(z)."""
    return -0.5 * (LOG_2PI + z.pow(2)).sum(dim=-1)


# Decoder passes per chunk of the importance samples in ``iwae``: K * N decodes at once would
# hold K copies of the batch's outputs (320 MB for K = 100 on 1,000 MNIST images); chunks of
# this many rows keep memory bounded whatever K is.
IWAE_CHUNK_ROWS = 8192


def iwae(model: VAE, x: torch.Tensor, generator: torch.Generator, k: int) -> torch.Tensor:
    """Per-sample -log p^_K(x) in nats: the negative importance-weighted bound with ``k`` samples.

    Burda, Grosse & Salakhutdinov 2016 ("Importance Weighted Autoencoders", ICLR), eq. 8:
    L_K(x) = log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_1..z_K ~ q(z|x) independently.
    -L_K(x) is an upper bound on -log p(x) that does not loosen on average as K grows
    (their Theorem 1); K = 1 is the single-sample -ELBO with the KL estimated by Monte Carlo.
    The samples go through the decoder in chunks of about IWAE_CHUNK_ROWS rows; log q(z|x)
    is computed from the standard-normal draws themselves, never by dividing by a variance
    that may underflow to zero.
    """
    require_model(model, "iwae")
    mu, logvar = model.encode(x)
    per_chunk = max(1, IWAE_CHUNK_ROWS // len(x))
    log_weights = []
    for start in range(0, k, per_chunk):
        n = min(per_chunk, k - start)
        eps = torch.randn((n, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)  # (n, N, L)
        output = model.decode(z.flatten(0, 1)).unflatten(0, (n, len(x)))
        log_likelihood = -torch.stack([model.nll(x, out) for out in output])
        log_posterior = -0.5 * (LOG_2PI + logvar + eps.pow(2)).sum(dim=-1)
        log_weights.append(log_likelihood + log_standard_normal(z) - log_posterior)
    return -(torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k))


def complexity_corrected(
    negative_log_likelihood: torch.Tensor, x: torch.Tensor, codec: str = "jpeg2000"
) -> torch.Tensor:
    """S(x) = -log2 p(x) - L(x) in bits (Serra et al. 2020, "Input complexity and
    out-of-distribution detection with likelihood-based generative models", ICLR, sec. 3).

    ``negative_log_likelihood`` is -log p(x) in nats (here the ``iwae`` bound) under the
    discretised logistic decoder, a distribution over the 8-bit image's values, converted to
    bits by dividing by ln 2; L(x) is :func:`compressed_bits` with ``codec``, a code length of
    the same 8-bit image. So S(x) is the log-ratio of two models of the same values, the VAE
    and a generic compressor: negative where the VAE knows the image better. (A Bernoulli
    cross-entropy on grey levels is not such a code length; compute_scores refuses it.)
    """
    complexity = torch.as_tensor(compressed_bits(x.cpu().numpy(), codec), dtype=negative_log_likelihood.dtype)
    return negative_log_likelihood / math.log(2) - complexity.to(negative_log_likelihood.device)


def likelihood_regret(
    model: VAE, x: torch.Tensor, generator: torch.Generator, steps: int, lr: float, n_samples: int
) -> torch.Tensor:
    """Per-sample likelihood regret in nats: ELBO(x; q_x*) - ELBO(x; q(z|x)) >= 0.

    Xiao, Yan & Amit 2020 ("Likelihood Regret: An Out-of-Distribution Detection Score for
    Variational Auto-encoder", NeurIPS, eq. 4): the decoder stays fixed and the posterior is
    fitted to x alone; an input unlike the training data gains much more than a normal one,
    whatever its complexity. They refit the encoder's weights per sample; here, as the
    cheaper limit of an encoder flexible enough, the posterior's own parameters (mu, log
    var) are fitted by ``steps`` Adam steps of rate ``lr`` from the encoder's output, all
    samples of the batch at once. The ELBO is estimated with the same ``n_samples`` noise
    draws at every step (common random numbers), so comparing steps is exact and the best
    ELBO seen, the encoder's included, makes the regret >= 0 by construction.
    """
    require_model(model, "likelihood_regret")
    with torch.no_grad():
        mu0, logvar0 = model.encode(x)
    eps = torch.randn((n_samples, *mu0.shape), generator=generator, device=mu0.device, dtype=mu0.dtype)

    def elbo(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        z = mu + eps * torch.exp(0.5 * logvar)
        nll = torch.stack([model.nll(x, model.decode(sample)) for sample in z]).mean(dim=0)
        return -(nll + model.kl(mu, logvar))

    with torch.no_grad():
        start = elbo(mu0, logvar0)
    best = start.clone()
    params = [mu0.clone().requires_grad_(True), logvar0.clone().requires_grad_(True)]
    optimizer = FusedAdam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            # gradients for the posterior parameters only, never accumulated on the model's
            grads = torch.autograd.grad(-elbo(*params).sum(), params)
            for p, g in zip(params, grads):
                p.grad = g
            optimizer.step()
            with torch.no_grad():
                best = torch.maximum(best, elbo(*params))
    return best - start


def kl_to_prior(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """KL(q(z|x) || p(z)) in nats: the information the posterior carries about x
    (closed form for Gaussians, Kingma & Welling 2014, app. B)."""
    require_model(model, "kl_to_prior")
    return model.kl(*model.encode(x))


def latent_mahalanobis(model: VAE, x: torch.Tensor, reference: TrainingReference) -> torch.Tensor:
    """Squared Mahalanobis distance of the posterior mean of x to the training codes'
    Gaussian, (mu - m)^T S^-1 (mu - m) (as in Lee et al. 2018, "A simple unified framework
    for detecting out-of-distribution samples", NeurIPS, applied to the VAE's latent space);
    scikit-learn's pseudo-inverse keeps it finite when S is singular."""
    mu, _ = model.encode(x)
    return torch.as_tensor(reference.code_gaussian.mahalanobis(mu.cpu().numpy().astype(np.float64)))


def latent_knn(model: VAE, x: torch.Tensor, reference: TrainingReference) -> torch.Tensor:
    """Distance of the posterior mean of x to its k-th nearest training posterior mean."""
    mu, _ = model.encode(x)
    return torch.as_tensor(kth_neighbor_distance(reference.code_neighbors, mu.cpu().numpy().astype(np.float64)))


def latent_residual_knn(model: VAE, x: torch.Tensor, reference: TrainingReference) -> torch.Tensor:
    """Distance to the k-th nearest training sample in the coordinates (mu, r W): the posterior
    mean, and the reconstruction residual r whitened by the training residuals' precision.

    A sample is far from normal data when it lies off the learned manifold (its residual,
    in units of how much each direction varies on normal data) or on it but away from the
    normal codes. The k-th-neighbour distance ranks both without a parametric density of
    either. On the training split itself each row is its own nearest neighbour.
    """
    joint = joint_coordinates(model, x, reference.residual_whitener, with_input=False)
    return torch.as_tensor(kth_neighbor_distance(reference.joint_neighbors, joint))


def joint_knn(model: VAE, x: torch.Tensor, reference: TrainingReference) -> torch.Tensor:
    """Mean distance to the k nearest training samples in the coordinates (x, mu, r W): the
    input as the encoder reads it, beside ``latent_residual_knn``'s posterior mean and whitened
    residual.

    The input block keeps what a plain k-NN on the standardised table sees (PyOD's KNN, the
    strongest baseline of the ODDS tables), the residual block what lies off the learned
    manifold, in units of how much each direction varies on normal data. The mean of the k
    distances is steadier than the k-th alone. Chosen on the development halves of the suite's
    22 tabular tasks (docs/suite.md): 0.880 against latent_residual_knn's 0.874.
    """
    joint = joint_coordinates(model, x, reference.residual_whitener, with_input=True)
    return torch.as_tensor(mean_neighbor_distance(reference.input_joint_neighbors, joint))


def score_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """The random generators of the sampled scores (registry.GENERATORS), each seeded with ``seed``."""
    return {name: torch.Generator(device=device).manual_seed(seed) for name in GENERATORS}


@dataclass
class Batch:
    """What a score of one batch may read: the model, the rows, the ``score`` params section,
    the random generators, the training reference, and the ``iwae`` bound, computed once per
    batch for ``iwae`` and ``complexity_corrected`` alike."""

    model: VAE
    x: torch.Tensor
    score: dict[str, Any]
    generators: dict[str, torch.Generator]
    reference: TrainingReference | None
    _bound: torch.Tensor | None = None

    def bound(self) -> torch.Tensor:
        if self._bound is None:
            self._bound = iwae(self.model, self.x, self.generators["iwae"], self.score["iwae_samples"])
        return self._bound


# Each score of the registry (but combined, which combines the others) from a Batch.
COMPUTE: dict[str, Callable[[Batch], torch.Tensor]] = {
    "reconstruction_mse": lambda b: reconstruction_mse(b.model, b.x, b.generators["elbo"]),
    "smoothed_reconstruction_mse": lambda b: smoothed_reconstruction_mse(b.model, b.x, b.generators["elbo"]),
    "ssim_error": lambda b: ssim_error(b.model, b.x, b.generators["elbo"]),
    "hog_error": lambda b: hog_error(b.model, b.x, b.generators["elbo"]),
    "negative_elbo": lambda b: negative_elbo(b.model, b.x, b.generators["elbo"], b.score["elbo_samples"]),
    "iwae": Batch.bound,
    "complexity_corrected": lambda b: complexity_corrected(b.bound(), b.x, b.score["complexity_codec"]),
    "likelihood_regret": lambda b: likelihood_regret(b.model, b.x, b.generators["regret"], b.score["regret_steps"],
                                                     b.score["regret_lr"], b.score["elbo_samples"]),
    "kl_to_prior": lambda b: kl_to_prior(b.model, b.x, b.generators["elbo"]),
    "latent_mahalanobis": lambda b: latent_mahalanobis(b.model, b.x, b.reference),
    "latent_knn": lambda b: latent_knn(b.model, b.x, b.reference),
    "latent_residual_knn": lambda b: latent_residual_knn(b.model, b.x, b.reference),
    "joint_knn": lambda b: joint_knn(b.model, b.x, b.reference),
}


@torch.no_grad()
def compute_scores(
    model: VAE,
    x: np.ndarray,
    score: dict[str, Any],
    seed: int,
    reference: TrainingReference | None = None,
    generators: dict[str, torch.Generator] | None = None,
    progress: bool = True,
    scales: dict[str, list[float]] | None = None,
) -> dict[str, np.ndarray]:
    """Each score of ``score['names']`` (the ``score`` params section) for every row of ``x``,
    batched; seeded so reruns agree exactly.

    Each sampled score draws from its own generator, seeded with ``seed``, so its values do
    not depend on which other scores are configured. ``complexity_corrected`` reuses the
    ``iwae`` bound of the same batch. The reference scores need ``reference``
    (reference.fit_reference on the training split), ``combined`` its components' ``scales``
    (``combination.fit_combination`` on the validation split). A stream scored in chunks of
    whole batches passes the same ``generators`` (:func:`score_generators`) to every call,
    and then gets the scores of one call on all its rows; ``progress`` False hides the bar.
    """
    names = [name for name in score["names"] if name != COMBINED]
    needing = [name for name in names if SCORES[name].reference]
    if needing and reference is None:
        raise ValueError(f"{needing[0]} needs a training reference (fit_reference on the train split)")
    if COMBINED in score["names"] and scales is None:
        raise ValueError("combined needs its components' scales (fit_combination on the validation split)")
    for name in names:
        require_model(model, name)
    model.eval()
    device = model_device(model)
    if generators is None:
        generators = score_generators(seed, device)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for xb in batches(x, score["batch_size"], device, progress="score" if progress else None):
        batch = Batch(model, xb, score, generators, reference)
        for name in names:
            out[name].append(COMPUTE[name](batch).cpu().numpy())
    result = {name: np.concatenate(parts).astype(np.float64) for name, parts in out.items()}
    if COMBINED in score["names"]:
        result[COMBINED] = combined(result, scales)
    return {name: result[name] for name in score["names"]}

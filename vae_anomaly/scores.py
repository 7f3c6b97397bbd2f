"""Per-sample anomaly scores: the higher, the more anomalous.

- ``reconstruction_mse``: squared error of the reconstruction from the posterior mean;
- ``smoothed_reconstruction_mse``: images only: the same error after a Gaussian low-pass of
  the residual, so that it measures structure rather than fine texture;
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
  reconstruction residual, whitened with the training residuals' covariance).

The last three compare a sample with the training split (:func:`fit_reference`), never with
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

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from .combination import combined
from .io import show_progress
from .models import VAE
from .params import DISCRETE_LIKELIHOOD_SCORES, REFERENCE_SCORES, VAE_ONLY_SCORES

# scikit-learn (1 CPU second, 80 MB) is imported where the reference scores are fitted: the
# train stage imports this module through the pipeline and never fits them.
if TYPE_CHECKING:
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.neighbors import NearestNeighbors

LOG_2PI = math.log(2 * math.pi)


def reconstruction_mse(model: VAE, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean squared error of the reconstruction from the posterior mean (no sampling)."""
    mu, _ = model.encode(x)
    return (x - model.mean(model.decode(mu))).pow(2).flatten(1).mean(dim=1)


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
    from scipy.ndimage import gaussian_filter  # imported here: only image scores need it

    if x.dim() != 4:
        raise ValueError(f"smoothed_reconstruction_mse needs images (N, C, H, W), got shape {tuple(x.shape)}")
    mu, _ = model.encode(x)
    residual = (x - model.mean(model.decode(mu))).cpu().numpy()
    smoothed = gaussian_filter(residual, sigma=(0, 0, SMOOTHING_SIGMA, SMOOTHING_SIGMA))
    return torch.as_tensor(np.square(smoothed).reshape(len(x), -1).mean(axis=1))


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


def require_vae(model: VAE, score: str) -> None:
    """The scores of VAE_ONLY_SCORES need the Gaussian posterior q(z|x) and N(0, I) prior of
    model.kind 'vae': a plain autoencoder has no posterior variance, and the Sparse VAE's
    log-uniform prior is improper, so an importance weight p(z) / q(z|x) means nothing there."""
    if model.config.kind != "vae":
        raise ValueError(
            f"the {score} score needs a VAE with a Gaussian posterior and a N(0, I) prior "
            f"(model.kind = 'vae'), not model.kind = {model.config.kind!r}"
        )


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
    require_vae(model, "iwae")
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


def require_discrete_likelihood(model: VAE, score: str) -> None:
    """The scores of DISCRETE_LIKELIHOOD_SCORES compare -log2 p(x) with a compressor's code
    length of the 8-bit image; only a distribution over the 256 intensities gives one."""
    if model.config.likelihood != "discretized_logistic":
        raise ValueError(
            f"the {score} score needs a likelihood over the 256 intensities of an 8-bit image "
            f"(model.likelihood = 'discretized_logistic'), not {model.config.likelihood!r}"
        )


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
    require_vae(model, "likelihood_regret")
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
    optimizer = torch.optim.Adam(params, lr=lr)
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
    require_vae(model, "kl_to_prior")
    return model.kl(*model.encode(x))


@dataclass
class TrainingReference:
    """What the reference scores compare a sample with, fitted on the training split only:
    a Gaussian of the posterior means (``latent_mahalanobis``), their neighbours
    (``latent_knn``), and the whitening of the residuals with the neighbours in the joint
    coordinates (``latent_residual_knn``). Unused parts are None."""

    k: int
    code_gaussian: EmpiricalCovariance | None = None
    code_neighbors: NearestNeighbors | None = None
    residual_whitener: np.ndarray | None = None
    joint_neighbors: NearestNeighbors | None = None
    # The training arrays the parts were fitted on, so that a saved detector can keep them
    # (reference_arrays) and fit the same parts again (reference_from_arrays).
    codes: np.ndarray | None = None
    joint: np.ndarray | None = None


@torch.no_grad()
def encode_and_reconstruct(model: VAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and the reconstruction residuals x - x_hat(mu), flattened to (N, D)."""
    mu, _ = model.encode(x)
    return mu, (x - model.mean(model.decode(mu))).flatten(1)


@torch.no_grad()
def fit_reference(model: VAE, x_train: np.ndarray, names: list[str], batch_size: int, k: int) -> TrainingReference | None:
    """The :class:`TrainingReference` of the reference scores among ``names``, fitted on the
    posterior means and residuals of ``x_train``; None when no such score is named."""
    wanted = set(names) & set(REFERENCE_SCORES)
    if not wanted:
        return None
    model.eval()
    device = next(model.parameters()).device
    xt = torch.as_tensor(x_train)
    parts = [encode_and_reconstruct(model, xt[start : start + batch_size].to(device))
             for start in range(0, len(xt), batch_size)]
    codes = torch.cat([mu for mu, _ in parts]).cpu().numpy().astype(np.float64)
    whitener = joint = None
    if "latent_residual_knn" in wanted:
        residuals = torch.cat([r for _, r in parts]).cpu().numpy().astype(np.float64)
        # Ledoit-Wolf shrinkage keeps the covariance invertible when residuals are nearly
        # collinear (few rows, many features); its precision's Cholesky factor W has
        # W W^T = S^-1, so r W has identity covariance on the training residuals.
        from sklearn.covariance import LedoitWolf

        precision = LedoitWolf().fit(residuals).precision_
        whitener = np.linalg.cholesky((precision + precision.T) / 2)
        joint = np.hstack([codes, residuals @ whitener])
    return reference_from_arrays(
        {"k": np.array(k), "codes": codes,
         **({} if joint is None else {"residual_whitener": whitener, "joint": joint})},
        names,
    )


def reference_arrays(reference: TrainingReference) -> dict[str, np.ndarray]:
    """The arrays a :class:`TrainingReference` is fitted from: k, the training posterior
    means, and (for ``latent_residual_knn``) the whitener and the joint coordinates; plain
    arrays, so a saved detector loads them without pickle."""
    arrays = {"k": np.array(reference.k), "codes": reference.codes}
    if reference.joint is not None:
        arrays.update(residual_whitener=reference.residual_whitener, joint=reference.joint)
    return arrays


def reference_from_arrays(arrays: dict[str, np.ndarray], names: list[str]) -> TrainingReference:
    """The :class:`TrainingReference` of the reference scores among ``names``, fitted on the
    arrays of :func:`reference_arrays` (which :func:`fit_reference` also builds): the same
    arrays give the same Gaussian and neighbours, so a saved detector scores as the pipeline."""
    from sklearn.covariance import EmpiricalCovariance
    from sklearn.neighbors import NearestNeighbors

    codes = arrays["codes"]
    reference = TrainingReference(k=min(int(arrays["k"]), len(codes)), codes=codes)
    if "latent_mahalanobis" in names:
        reference.code_gaussian = EmpiricalCovariance().fit(codes)
    if "latent_knn" in names:
        reference.code_neighbors = NearestNeighbors(n_neighbors=reference.k).fit(codes)
    if "latent_residual_knn" in names:
        if "joint" not in arrays:
            raise ValueError("latent_residual_knn needs the residual whitener and joint coordinates of the training split")
        reference.residual_whitener, reference.joint = arrays["residual_whitener"], arrays["joint"]
        reference.joint_neighbors = NearestNeighbors(n_neighbors=reference.k).fit(reference.joint)
    return reference


def kth_neighbor_distance(neighbors: NearestNeighbors, points: np.ndarray) -> np.ndarray:
    """Euclidean distance of each point to its k-th nearest reference point (Ramaswamy et al.
    2000, the score of PyOD's KNN with method 'largest')."""
    distances, _ = neighbors.kneighbors(points)
    return distances[:, -1]


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
    mu, residual = encode_and_reconstruct(model, x)
    joint = np.hstack([mu.cpu().numpy().astype(np.float64),
                       residual.cpu().numpy().astype(np.float64) @ reference.residual_whitener])
    return torch.as_tensor(kth_neighbor_distance(reference.joint_neighbors, joint))


def score_generators(seed: int, device: torch.device) -> dict[str, torch.Generator]:
    """The random generators of the sampled scores, each seeded with ``seed``."""
    return {name: torch.Generator(device=device).manual_seed(seed) for name in ("elbo", "iwae", "regret")}


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
    (:func:`fit_reference` on the training split), ``combined`` its components' ``scales``
    (``combination.fit_combination`` on the validation split). A stream scored in chunks of
    whole batches passes the same ``generators`` (:func:`score_generators`) to every call,
    and then gets the scores of one call on all its rows; ``progress`` False hides the bar.
    """
    names = [name for name in score["names"] if name != "combined"]
    missing = [name for name in names if name in REFERENCE_SCORES]
    if missing and reference is None:
        raise ValueError(f"{missing[0]} needs a training reference (fit_reference on the train split)")
    if "combined" in score["names"] and scales is None:
        raise ValueError("combined needs its components' scales (fit_combination on the validation split)")
    for name in set(names) & set(VAE_ONLY_SCORES):
        require_vae(model, name)
    for name in set(names) & set(DISCRETE_LIKELIHOOD_SCORES):
        require_discrete_likelihood(model, name)
    device = next(model.parameters()).device
    model.eval()
    if generators is None:
        generators = score_generators(seed, device)
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    xt = torch.as_tensor(x)
    batches = range(0, len(xt), score["batch_size"])
    for start in tqdm(batches, desc="score", unit="batch", disable=not (progress and show_progress())):
        xb = xt[start : start + score["batch_size"]].to(device)
        bound: torch.Tensor | None = None
        if {"iwae", "complexity_corrected"} & set(names):
            bound = iwae(model, xb, generators["iwae"], score["iwae_samples"])
        scorers: dict[str, Callable[[], torch.Tensor]] = {
            "reconstruction_mse": lambda: reconstruction_mse(model, xb, generators["elbo"]),
            "smoothed_reconstruction_mse": lambda: smoothed_reconstruction_mse(model, xb, generators["elbo"]),
            "negative_elbo": lambda: negative_elbo(model, xb, generators["elbo"], score["elbo_samples"]),
            "iwae": lambda: bound,
            "complexity_corrected": lambda: complexity_corrected(bound, xb, score["complexity_codec"]),
            "likelihood_regret": lambda: likelihood_regret(
                model, xb, generators["regret"], score["regret_steps"], score["regret_lr"], score["elbo_samples"]),
            "kl_to_prior": lambda: kl_to_prior(model, xb, generators["elbo"]),
            "latent_mahalanobis": lambda: latent_mahalanobis(model, xb, reference),
            "latent_knn": lambda: latent_knn(model, xb, reference),
            "latent_residual_knn": lambda: latent_residual_knn(model, xb, reference),
        }
        for name in names:
            out[name].append(scorers[name]().cpu().numpy())
    result = {name: np.concatenate(parts).astype(np.float64) for name, parts in out.items()}
    if "combined" in score["names"]:
        result["combined"] = combined(result, scales)
    return {name: result[name] for name in score["names"]}

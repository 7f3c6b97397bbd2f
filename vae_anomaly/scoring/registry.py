"""Every score, once: its name, what it measures and what it needs (a VAE's Gaussian posterior,
images, the training reference, a likelihood that is a code length, a random generator).
Params validation, the Detector and ``scores.compute_scores`` all read this table; it needs no
torch, so validating params.yaml stays quick. A new score is an entry here and its function
in scores.py (``COMPUTE``); tests/scoring/test_registry.py holds the two together."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    name: str
    what: str  # one line, for docs/params.md
    vae: bool = False  # a Gaussian posterior and a N(0, I) prior: model.kind 'vae'
    images: bool = False  # defined on images (N, C, H, W) only
    reference: bool = False  # compares a sample with the training split (reference.py)
    code_length: bool = False  # -log p(x) must be a code length of the 8-bit image
    draws: str | None = None  # the random generator it samples from, if any (scores.score_generators)


COMBINED = "combined"
SCORES: dict[str, Score] = {s.name: s for s in (
    Score("reconstruction_mse", "squared error of the reconstruction from the posterior mean"),
    Score("smoothed_reconstruction_mse", "the same error after a Gaussian low-pass of the residual",
          images=True),
    Score("ssim_error", "1 - the structural similarity (SSIM) of the image and its reconstruction", images=True),
    Score("hog_error", "squared distance of the image's and its reconstruction's histograms of oriented gradients",
          images=True),
    Score("negative_elbo", "-ELBO, averaged over score.elbo_samples posterior samples", draws="elbo"),
    Score("iwae", "the importance-weighted bound on -log p(x), score.iwae_samples samples", vae=True,
          draws="iwae"),
    Score("complexity_corrected", "-log2 p(x) minus the image's compressed length (Serra et al. 2020)",
          vae=True, images=True, code_length=True, draws="iwae"),
    Score("kl_to_prior", "KL(q(z|x) || p(z)): how far the posterior moves from the prior", vae=True),
    Score("latent_mahalanobis", "Mahalanobis distance of the posterior mean to the training codes' Gaussian",
          reference=True),
    Score("latent_knn", "distance of the posterior mean to its k-th nearest training posterior mean",
          reference=True),
    Score("latent_residual_knn", "k-NN distance in posterior mean and whitened residual to the training rows",
          reference=True),
    Score("joint_knn", "mean distance to the k nearest training rows in the input, posterior mean and whitened "
          "residual", reference=True),
    Score("likelihood_regret", "the ELBO gained by refitting the posterior to x alone (Xiao et al. 2020)",
          vae=True, draws="regret"),
    Score(COMBINED, "the mean of score.combine's scores, each scaled on the validation split"),
)}
NAMES = tuple(SCORES)
GENERATORS = tuple(dict.fromkeys(s.draws for s in SCORES.values() if s.draws))


def names_that(need: str) -> tuple[str, ...]:
    """The scores whose ``need`` (a field of :class:`Score`: "vae", "images", "reference",
    "code_length") is set."""
    return tuple(name for name, score in SCORES.items() if getattr(score, need))


def model_problem(name: str, kind: str, likelihood: str) -> str | None:
    """Why a model of ``model.kind`` and ``model.likelihood`` cannot give the score ``name``,
    as the end of a sentence naming the params to change; None when it can."""
    score = SCORES[name]
    if score.vae and kind != "vae":
        # an autoencoder has no posterior variance, and the Sparse VAE's log-uniform prior is
        # improper: an importance weight p(z) / q(z|x) means nothing there
        return ("needs a VAE with a Gaussian posterior and a N(0, I) prior (model.kind = 'vae'), "
                f"not model.kind = {kind!r}")
    if score.code_length and likelihood != "discretized_logistic":
        return ("compares -log2 p(x) with the compressed length of the 8-bit image, so p(x) must be "
                "a distribution over the 256 intensities: set model.likelihood = 'discretized_logistic' "
                f"(not {likelihood!r})")
    return None

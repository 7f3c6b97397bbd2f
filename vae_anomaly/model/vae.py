"""The VAE (MLP or convolutional), the Sparse VAE, the plain autoencoder, and checkpoints.

The decoder's likelihoods and the KL terms are in likelihoods.py.
"""
from __future__ import annotations

import io
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import UserError
from ..io import write_bytes
from .likelihoods import (
    bernoulli_nll,
    discretized_logistic_log_prob,
    discretized_logistic_nll,
    gaussian_nll,
    kl_to_standard_normal_per_dim,
    log_uniform_kl,
    table_nll,
)

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "vae_anomaly/vae-v2"


@dataclass
class VAEConfig:
    input_shape: list[int]  # (D,) for tabular data, (C, H, W) for images
    hidden_dims: list[int] = field(default_factory=lambda: [128, 64])  # 30-128-64-z in the spec
    latent_dim: int = 8
    architecture: str = "mlp"  # mlp | conv (images only)
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])  # each conv halves H, W
    likelihood: str = "gaussian"  # gaussian | bernoulli | discretized_logistic
    kind: str = "vae"  # vae | ae (plain autoencoder: deterministic latent, no KL) | sparse
    # Tables: the [start, width] of each categorical column's one-hot block (data/columns.py);
    # the other inputs are numbers, with model.likelihood (gaussian).
    categorical: list[list[int]] = field(default_factory=list)


# Decoder outputs per input value, by model.likelihood: the mean (gaussian), the logit
# (bernoulli), or the mean's logit and the log scale (discretized_logistic).
OUTPUTS_PER_VALUE = {"gaussian": 1, "bernoulli": 1, "discretized_logistic": 2}


class VAE(nn.Module):
    """Encoder to (mu, logvar), mirrored decoder with a linear output (logits for Bernoulli).

    MLP: input-h1-...-hk-(mu, logvar), ReLU. Conv: stride-2 4x4 convolutions (each halves H
    and W) then the MLP; the decoder mirrors both with transposed convolutions. The decoder
    returns OUTPUTS_PER_VALUE[likelihood] channels per input channel.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        shape = list(config.input_shape)
        n_out = OUTPUTS_PER_VALUE[config.likelihood]
        conv = config.architecture == "conv"
        if conv:
            self.features, feature_shape = _conv_encoder(shape, config.conv_channels)
            decoded_shape = feature_shape
        else:
            self.features, feature_shape = nn.Identity(), shape
            decoded_shape = [shape[0] * n_out, *shape[1:]]
        dims = [math.prod(feature_shape), *config.hidden_dims]
        self.encoder = nn.Sequential(nn.Flatten(), *_mlp(dims))
        self.to_mu = nn.Linear(dims[-1], config.latent_dim)
        self.to_logvar = nn.Linear(dims[-1], config.latent_dim)
        back = [config.latent_dim, *reversed(dims[1:]), math.prod(decoded_shape)]
        self.decoder = nn.Sequential(
            *_mlp(back[:-1]), nn.Linear(back[-2], back[-1]), nn.Unflatten(1, tuple(decoded_shape))
        )
        if conv:
            self.decoder.extend([nn.ReLU(), *_conv_decoder(shape[0] * n_out, config.conv_channels)])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(self.features(self.filled(x)))
        return self.to_mu(h), self.to_logvar(h)

    def has_missing(self, x: torch.Tensor) -> bool:
        """Whether the table rows ``x`` hold missing entries (NaN); images never do."""
        return len(self.config.input_shape) == 1 and bool(torch.isnan(x).any())

    def filled(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: missing entries as 0 (a number's training mean, no category),
        as HI-VAE and MIWAE feed them; the likelihood leaves them out."""
        return torch.nan_to_num(x, nan=0.0) if self.has_missing(x) else x

    def reparameterize(
        self, mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if self.config.kind == "ae":
            return mu
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output: the mean (Gaussian) or the logits (Bernoulli)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """The reconstruction from the decoder's output, in the data's units: E[x|z], or for
        the discretised logistic the logistic's location (its mean before binning)."""
        likelihood = self.config.likelihood
        if likelihood == "bernoulli":
            return torch.sigmoid(output)
        if likelihood == "discretized_logistic":
            return torch.sigmoid(output[:, : self.config.input_shape[0]])
        if self.config.categorical:  # each category's probabilities
            output = output.clone()
            for start, width in self.config.categorical:
                output[:, start:start + width] = torch.softmax(output[:, start:start + width], dim=1)
        return output

    def residual(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """x - E[x|z], 0 where x is missing (so it adds nothing to an error or a distance); a
        category unseen in training (a block of zeros) counts as the column's least likely one,
        as in its likelihood (likelihoods.table_nll)."""
        mean = self.mean(output)
        for start, width in self.config.categorical:
            block = x[:, start:start + width]
            unseen = (block == 0).all(dim=1)
            if bool(unseen.any()):
                least = torch.nn.functional.one_hot(mean[:, start:start + width].argmin(dim=1), width).to(x.dtype)
                x = x.clone()
                x[unseen, start:start + width] = least[unseen]
        residual = x - mean
        return torch.where(torch.isnan(x), 0.0, residual) if self.has_missing(x) else residual

    def nll(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Per-sample -log p(x|z)."""
        likelihood = self.config.likelihood
        if likelihood == "bernoulli":
            return bernoulli_nll(x, output)
        if likelihood == "discretized_logistic":
            c = self.config.input_shape[0]
            return discretized_logistic_nll(x, output[:, :c], output[:, c:])
        if self.config.categorical or self.has_missing(x):
            return table_nll(x, output, self.config.categorical)
        return gaussian_nll(x, output)

    def nll_per_value(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) of each value of images (N, C, H, W), the terms :meth:`nll` sums: the
        binary cross-entropy, the discretised logistic's code length, or the Gaussian's."""
        likelihood = self.config.likelihood
        if likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(output, x, reduction="none")
        if likelihood == "discretized_logistic":
            c = self.config.input_shape[0]
            return -discretized_logistic_log_prob(x, output[:, :c], output[:, c:])
        return (x - output).pow(2) + 0.5 * math.log(math.pi)

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z_j|x) || p(z_j)) per sample and latent dimension; zero for the plain autoencoder."""
        if self.config.kind == "ae":
            return torch.zeros_like(mu)
        return kl_to_standard_normal_per_dim(mu, logvar)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-sample KL(q(z|x) || p(z)); zero for the plain autoencoder."""
        return self.kl_per_dim(mu, logvar).sum(dim=1)

    def loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reconstruction NLL (one posterior sample) and KL."""
        output, mu, logvar = self(x)
        return self.nll(x, output), self.kl(mu, logvar)


class SparseVAE(VAE):
    """The Sparse VAE of Antelmi et al. (2019, "Sparse Multi-Channel Variational Autoencoder for
    the Joint Analysis of Heterogeneous Data", ICML, sec. 3): a variational-dropout posterior
    q(z_ij|x_i) = N(mu_ij, alpha_ij mu_ij^2) under the log-uniform prior p(|z_j|) ~ 1/|z_j|,
    whose KL, :func:`log_uniform_kl`, depends on alpha alone (Molchanov et al. 2017, eq. 14).

    Parameterised additively, as Molchanov et al. (2017, sec. 4.1) train their weights: one
    learnable noise variance sigma_j^2 per latent dimension, shared by all samples, and
    alpha_ij = sigma_j^2 / mu_ij^2. Antelmi et al. share alpha_j itself, so the noise scales
    with |mu|; then a dimension's information lies in the scale of mu at no cost in KL (the
    prior is scale-free), and on the synthetic data (4 true factors, 8 latent dimensions) their
    form pruned nothing in 60 epochs and went on to prune true factors when log alpha learned
    faster (docs/study.md). With a shared sigma_j^2 the KL grows with log(mu^2 / sigma^2): a
    dimension pays for its signal, and one the decoder does not need is switched off by the
    encoder (mu_j -> 0, so alpha_ij -> oo and its KL -> 0). Read it with
    ``scoring.latent.sparse_log_alpha``.
    """

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        del self.to_logvar  # the variance is one parameter per dimension, not a function of x
        # log sigma_j^2 = 0: the prior's unit scale; mu starts near 0, so alpha starts large.
        self.log_noise_var = nn.Parameter(torch.zeros(config.latent_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = self.to_mu(self.encoder(self.features(x)))
        return mu, self.log_noise_var.expand_as(mu)

    def kl_per_dim(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL per sample and dimension, at log alpha_ij = log sigma_j^2 - log mu_ij^2."""
        # 1e-8 keeps log mu^2 finite at mu = 0, as in the authors' code (mcvae, compute_logvar).
        return log_uniform_kl(logvar - torch.log(mu.pow(2) + 1e-8))


def _mlp(dims: list[int]) -> list[nn.Module]:
    """Linear layers between consecutive sizes, each followed by a ReLU."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return layers


def _conv_encoder(shape: list[int], channels: list[int]) -> tuple[nn.Sequential, list[int]]:
    c, h, w = shape
    layers: list[nn.Module] = []
    for out in channels:
        layers += [nn.Conv2d(c, out, kernel_size=4, stride=2, padding=1), nn.ReLU()]
        c, h, w = out, h // 2, w // 2
    return nn.Sequential(*layers), [c, h, w]


def _conv_decoder(out_channels: int, channels: list[int]) -> list[nn.Module]:
    """Transposed convolutions mirroring :func:`_conv_encoder`, linear output."""
    layers: list[nn.Module] = []
    sizes = [*reversed(channels), out_channels]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.ConvTranspose2d(a, b, kernel_size=4, stride=2, padding=1))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return layers


def check_input_shape(config: VAEConfig) -> None:
    """Raise a UserError when the data cannot feed the configured architecture."""
    shape = config.input_shape
    if config.architecture != "conv":
        return
    if len(shape) != 3:
        raise UserError(
            f"model.architecture = 'conv' needs images (C, H, W), but the data has shape "
            f"{tuple(shape)}; use model.architecture = 'mlp' for tabular data"
        )
    factor = 2 ** len(config.conv_channels)
    if shape[1] % factor or shape[2] % factor:
        raise UserError(
            f"model.conv_channels has {len(config.conv_channels)} stride-2 layers, so image "
            f"height and width must be multiples of {factor}; the images are {shape[1]}x{shape[2]}"
        )


def build_model(config: VAEConfig) -> VAE:
    check_input_shape(config)
    return SparseVAE(config) if config.kind == "sparse" else VAE(config)


def model_bytes(model: VAE) -> bytes:
    """The checkpoint file of ``model`` (weights and config), as :func:`save_model` writes it."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = asdict(model.config)
    if not config["categorical"]:  # written only where set: a model of numbers saves as it always did
        del config["categorical"]
    payload = {"format": CHECKPOINT_FORMAT, "config": config, "state_dict": state}
    # torch.save names the archive's folder after the file it writes to, which atomic_path
    # names at random; into a buffer it is always "archive", so equal weights give equal files.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_model(model: VAE, path: str | Path) -> None:
    write_bytes(path, model_bytes(model))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> VAE:
    """Load weights saved by :func:`save_model`; ``weights_only`` never runs pickled code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found; run the train stage first (`dvc repro train`)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise UserError(
            f"{path} is not a readable model checkpoint ({type(err).__name__}); "
            "re-run the train stage (`dvc repro -f train`)"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} was not written by this project's train stage (expected format "
            f"{CHECKPOINT_FORMAT!r}); re-run `dvc repro -f train`"
        )
    model = build_model(VAEConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    log.info("read %s", path)
    return model.to(device).eval()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = 'cuda' but no CUDA GPU is available; use 'auto' or 'cpu'")
    return torch.device(name)

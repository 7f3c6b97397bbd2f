"""The VAE (MLP or convolutional), the Sparse VAE, the plain autoencoder, their loss terms,
and checkpoints.

Likelihoods of the decoder p(x|z):
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
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .io import UserError, log, write_bytes

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
        h = self.encoder(self.features(x))
        return self.to_mu(h), self.to_logvar(h)

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
        return output

    def nll(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """Per-sample -log p(x|z)."""
        likelihood = self.config.likelihood
        if likelihood == "bernoulli":
            return bernoulli_nll(x, output)
        if likelihood == "discretized_logistic":
            c = self.config.input_shape[0]
            return discretized_logistic_nll(x, output[:, :c], output[:, c:])
        return gaussian_nll(x, output)

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
    :func:`vae_anomaly.latent.sparse_log_alpha`.
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


def build_model(config: VAEConfig) -> VAE:
    check_input_shape(config)
    return SparseVAE(config) if config.kind == "sparse" else VAE(config)


def model_bytes(model: VAE) -> bytes:
    """The checkpoint file of ``model`` (weights and config), as :func:`save_model` writes it."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "config": asdict(model.config), "state_dict": state}
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

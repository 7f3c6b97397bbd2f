"""The scores of vae_anomaly.scoring.scores: the importance-weighted bound, the complexity
correction, the latent scores, and where each applies."""
import io
import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Normal, kl_divergence

from vae_anomaly.errors import ParamsError
from vae_anomaly.model.likelihoods import discretized_logistic_log_prob, discretized_logistic_nll
from vae_anomaly.model.vae import VAE, VAEConfig
from vae_anomaly.params import validate
from vae_anomaly.scoring.combination import combined, fit_combination
from vae_anomaly.scoring.complexity import CODECS, compressed_bits
from vae_anomaly.scoring.reference import fit_reference
from vae_anomaly.scoring.scores import (
    complexity_corrected,
    compute_scores,
    hog_error,
    image_hog,
    iwae,
    kl_to_prior,
    likelihood_regret,
    negative_elbo,
    smoothed_reconstruction_mse,
    ssim_error,
)

from support import score_params


def model_of(config: VAEConfig, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(config).eval()


@pytest.mark.parametrize("config, shape", [
    (VAEConfig([6], [8], 3), (20, 6)),
    (VAEConfig([1, 8, 8], [16], 2, "conv", [4], "bernoulli"), (5, 1, 8, 8)),
])
@torch.no_grad()
def test_iwae_with_one_sample_is_the_single_sample_bound_on_the_same_noise(config, shape):
    model = model_of(config)
    x = torch.rand(shape)
    got = iwae(model, x, torch.Generator().manual_seed(3), k=1)

    mu, logvar = model.encode(x)
    z = model.reparameterize(mu, logvar, torch.Generator().manual_seed(3))
    log_prior = Normal(0.0, 1.0).log_prob(z).sum(dim=1)
    log_posterior = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(dim=1)
    expected = model.nll(x, model.decode(z)) - log_prior + log_posterior
    torch.testing.assert_close(got, expected)


@torch.no_grad()
def test_iwae_tightens_with_k_towards_the_exact_likelihood_of_a_linear_gaussian_vae():
    # No hidden layers: p(z) = N(0, I), p(x|z) = N(Wz + b, I/2), so p(x) = N(b, WW^T + I/2).
    model = model_of(VAEConfig([6], [], 2))
    weight, bias = model.decoder[0].weight.numpy(), model.decoder[0].bias.numpy()
    exact = stats.multivariate_normal(bias, weight @ weight.T + 0.5 * np.eye(6))
    x = torch.as_tensor(exact.rvs(size=200, random_state=0), dtype=torch.float32)
    minus_log_px = -exact.logpdf(x.numpy())

    gaps = []
    for k in (1, 10, 100, 1000):
        bound = iwae(model, x, torch.Generator().manual_seed(k), k).numpy()
        gaps.append(float(np.mean(bound - minus_log_px)))
    assert gaps[0] > 0.5  # the untrained posterior is poor: the single-sample bound is loose
    assert all(a > b for a, b in zip(gaps, gaps[1:])), gaps  # never loosens on average
    assert 0 <= gaps[-1] < 0.1 * gaps[0], gaps  # an upper bound, nearly tight at K = 1000


@torch.no_grad()
def test_iwae_k1_agrees_on_average_with_the_elbo_and_its_closed_form_kl():
    model = model_of(VAEConfig([6], [8], 3))
    x = torch.randn(1, 6).expand(4000, 6)
    one = iwae(model, x, torch.Generator().manual_seed(0), k=1)
    elbo = negative_elbo(model, x, torch.Generator().manual_seed(1), n_samples=1)
    assert one.mean().item() == pytest.approx(elbo.mean().item(), rel=0.02)


@pytest.mark.parametrize("codec", ["jpeg2000", "png"])
def test_complexity_of_a_constant_image_is_far_below_that_of_noise(codec):
    constant = np.full((1, 1, 28, 28), 0.5, dtype=np.float32)
    noise = np.random.default_rng(0).random((1, 1, 28, 28)).astype(np.float32)
    bits = compressed_bits(np.concatenate([constant, noise]), codec)
    assert bits[0] < 150 * 8  # headers and a short run: 8-bit noise would need 784 bytes
    assert bits[1] > 0.95 * 28 * 28 * 8  # uniform 8-bit noise does not compress
    assert (bits % 8 == 0).all()


@pytest.mark.parametrize("codec", ["jpeg2000", "png"])
def test_codecs_are_lossless(codec):
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 256, (12, 10), dtype=np.uint8)
    image_format, options = CODECS[codec]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    buffer.seek(0)
    np.testing.assert_array_equal(np.asarray(Image.open(buffer)), pixels)


def test_complexity_corrected_subtracts_the_compressed_bits_from_the_likelihood_in_bits():
    x = torch.cat([torch.full((1, 1, 8, 8), 0.25), torch.rand((1, 1, 8, 8), generator=torch.Generator().manual_seed(0))])
    nll_nats = torch.tensor([100.0, 100.0], dtype=torch.float64)
    got = complexity_corrected(nll_nats, x, "png")
    expected = 100.0 / math.log(2) - compressed_bits(x.numpy(), "png")
    np.testing.assert_allclose(got.numpy(), expected)
    assert got[0] > got[1]  # same likelihood: the simpler image is the more surprising one


def test_compressed_bits_refuses_values_outside_the_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        compressed_bits(np.full((1, 1, 4, 4), 2.0))


@torch.no_grad()
def test_compute_scores_gives_every_score_and_reuses_the_bound():
    model = model_of(VAEConfig([1, 8, 8], [16], 2, likelihood="discretized_logistic"))
    rng = np.random.default_rng(0)
    train, x = rng.random((60, 1, 8, 8), dtype=np.float32), rng.random((25, 1, 8, 8), dtype=np.float32)
    names = ["negative_elbo", "reconstruction_mse", "iwae", "complexity_corrected", "kl_to_prior",
             "latent_mahalanobis", "latent_knn", "latent_residual_knn", "joint_knn"]
    reference = fit_reference(model, train, names, batch_size=16, k=5)
    every = compute_scores(model, x, score_params(names, 10, 2), seed=0, reference=reference)
    alone = compute_scores(model, x, score_params(["iwae"], 10, 2), seed=0)
    np.testing.assert_array_equal(every["iwae"], alone["iwae"])  # independent of other scores
    np.testing.assert_allclose(every["complexity_corrected"], every["iwae"] / math.log(2) - compressed_bits(x))
    mu, logvar = model.encode(torch.as_tensor(x))
    np.testing.assert_allclose(every["kl_to_prior"], model.kl(mu, logvar).numpy(), rtol=1e-6)
    assert all(s.shape == (25,) and np.isfinite(s).all() for s in every.values())


@torch.no_grad()
def test_latent_mahalanobis_uses_the_training_codes_gaussian():
    model = model_of(VAEConfig([5], [8], 3))
    rng = np.random.default_rng(0)
    train, x = rng.normal(size=(300, 5)).astype(np.float32), rng.normal(size=(40, 5)).astype(np.float32)
    reference = fit_reference(model, train, ["latent_mahalanobis"], batch_size=64, k=5)
    train_mu = model.encode(torch.as_tensor(train))[0].numpy().astype(np.float64)
    np.testing.assert_allclose(reference.code_gaussian.location_, train_mu.mean(axis=0), rtol=1e-6)
    got = compute_scores(model, x, score_params(["latent_mahalanobis"]), seed=0, reference=reference)
    diff = model.encode(torch.as_tensor(x))[0].numpy() - train_mu.mean(axis=0)
    precision = np.linalg.inv(np.cov(train_mu, rowvar=False, bias=True))
    np.testing.assert_allclose(got["latent_mahalanobis"], np.einsum("ij,jk,ik->i", diff, precision, diff), rtol=1e-4)


@pytest.mark.parametrize("name", ["latent_mahalanobis", "latent_knn", "latent_residual_knn", "joint_knn"])
def test_reference_scores_without_a_training_reference_are_refused(name):
    model = model_of(VAEConfig([5], [8], 3))
    with pytest.raises(ValueError, match=f"{name} needs a training reference"):
        compute_scores(model, np.zeros((2, 5), np.float32), score_params([name]), seed=0)


@pytest.mark.parametrize("name", ["iwae", "kl_to_prior"])
def test_vae_only_scores_refuse_an_autoencoder(name):
    model = model_of(VAEConfig([5], [8], 3, kind="ae"))
    with pytest.raises(ValueError, match=f"{name} score needs a VAE"):
        compute_scores(model, np.zeros((2, 5), np.float32), score_params([name]), seed=0)
    with pytest.raises(ValueError, match="model.kind = 'ae'"):
        (iwae if name == "iwae" else lambda m, x, g, k: kl_to_prior(m, x, g))(
            model, torch.zeros(2, 5), torch.Generator(), 2)


def test_params_refuse_scores_the_model_or_data_cannot_give(params):
    params["score"].update(names=["negative_elbo", "iwae"], primary="negative_elbo")
    params["model"]["kind"] = "ae"
    with pytest.raises(ParamsError, match=r"score.names includes 'iwae'.*model.kind = 'ae'"):
        validate(params)
    params["model"]["kind"] = "vae"
    validate(params)
    params["score"]["names"] = ["negative_elbo", "complexity_corrected"]
    with pytest.raises(ParamsError, match=r"'complexity_corrected'.*data.source = 'synthetic' is tabular"):
        validate(params)
    params["data"]["source"] = "fashion_mnist"
    with pytest.raises(ParamsError, match=r"'complexity_corrected'.*model.likelihood = 'discretized_logistic' \(not 'gaussian'\)"):
        validate(params)
    params["model"]["likelihood"] = "discretized_logistic"
    validate(params)
    params["data"]["source"] = "synthetic"
    params["score"]["names"] = ["negative_elbo"]
    with pytest.raises(ParamsError, match=r"'discretized_logistic' models 8-bit pixel.*'synthetic' is tabular"):
        validate(params)


@pytest.mark.parametrize("location, log_scale", [(0.0, -8.0), (0.3, -3.0), (-4.0, -1.0), (5.0, 0.5), (0.0, 3.0)])
def test_the_discretized_logistic_sums_to_one_over_the_256_intensities(location, log_scale):
    values = torch.arange(256, dtype=torch.float64) / 255
    log_p = discretized_logistic_log_prob(
        values, torch.full_like(values, location), torch.full_like(values, log_scale)
    )
    assert torch.exp(log_p).sum().item() == pytest.approx(1.0, abs=1e-4)
    assert (log_p <= 0).all()


def test_the_discretized_logistic_likelihood_is_the_code_length_of_the_8bit_image():
    # A decoder that puts all its mass on the image's own intensities codes it in ~0 nats;
    # the same decoder on another image pays for every pixel it got wrong.
    image = torch.randint(0, 256, (1, 1, 4, 4)).double() / 255
    logits = torch.logit(image.clamp(1e-4, 1 - 1e-4))
    sharp = torch.full_like(image, -8.0)
    assert discretized_logistic_nll(image, logits, sharp).item() < 16 * 0.01
    assert discretized_logistic_nll(1 - image, logits, sharp).item() > 16 * 5


@torch.no_grad()
def test_iwae_stays_finite_when_the_posterior_variance_underflows():
    model = model_of(VAEConfig([4], [8], 2))
    model.to_logvar.bias.fill_(-200.0)  # exp(-100) underflows float32: z == mu exactly
    bound = iwae(model, torch.randn(6, 4), torch.Generator().manual_seed(0), k=5)
    assert torch.isfinite(bound).all()


@torch.no_grad()
def test_latent_knn_is_the_distance_to_the_kth_nearest_training_code():
    model = model_of(VAEConfig([5], [8], 3))
    rng = np.random.default_rng(1)
    train, x = rng.normal(size=(80, 5)).astype(np.float32), rng.normal(size=(7, 5)).astype(np.float32)
    reference = fit_reference(model, train, ["latent_knn"], batch_size=32, k=4)
    got = compute_scores(model, x, score_params(["latent_knn"], k=4), seed=0, reference=reference)["latent_knn"]
    codes, queries = (model.encode(torch.as_tensor(a))[0].numpy().astype(np.float64) for a in (train, x))
    distances = np.sqrt(((queries[:, None] - codes[None]) ** 2).sum(axis=-1))
    np.testing.assert_allclose(got, np.sort(distances, axis=1)[:, 3], rtol=1e-6)


@torch.no_grad()
def test_latent_residual_knn_weighs_residuals_by_how_rarely_normal_data_has_them():
    # Training data whose feature 0 is reconstructed almost exactly, feature 1 loosely: the
    # same residual is far more surprising in feature 0, and a training row is its own
    # nearest neighbour.
    model = model_of(VAEConfig([2], [], 1, kind="ae"))
    model.to_mu.weight.zero_(); model.to_mu.bias.zero_()  # decode(mu) is the constant bias
    model.decoder[0].bias.zero_()
    rng = np.random.default_rng(0)
    train = np.column_stack([0.01 * rng.normal(size=500), rng.normal(size=500)]).astype(np.float32)
    reference = fit_reference(model, train, ["latent_residual_knn"], batch_size=100, k=1)
    params = score_params(["latent_residual_knn"], k=1)
    on_train = compute_scores(model, train[:5], params, seed=0, reference=reference)["latent_residual_knn"]
    np.testing.assert_allclose(on_train, 0.0, atol=1e-6)
    x = np.array([[0.5, 0.0], [0.0, 0.5]], dtype=np.float32)
    got = compute_scores(model, x, params, seed=0, reference=reference)["latent_residual_knn"]
    assert got[0] > 10 * got[1]


@torch.no_grad()
def test_joint_knn_is_the_mean_distance_to_the_k_nearest_rows_in_input_code_and_whitened_residual():
    model = model_of(VAEConfig([4], [8], 2))
    rng = np.random.default_rng(2)
    train = rng.normal(size=(120, 4)).astype(np.float32)
    x = rng.normal(size=(9, 4)).astype(np.float32)
    x[0, 1] = np.nan  # a missing entry reads as 0 in the input and the residual
    reference = fit_reference(model, train, ["joint_knn", "latent_residual_knn"], batch_size=50, k=3)
    got = compute_scores(model, x, score_params(["joint_knn", "latent_residual_knn"], k=3), seed=0, reference=reference)

    def coordinates(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = torch.as_tensor(a)
        mu = model.encode(t)[0]
        residual = torch.nan_to_num(t - model.decode(mu), nan=0.0).numpy().astype(np.float64)
        return np.nan_to_num(a).astype(np.float64), mu.numpy().astype(np.float64), residual @ reference.residual_whitener

    ref, query = (np.hstack(coordinates(a)) for a in (train, x))
    distances = np.sort(np.sqrt(((query[:, None] - ref[None]) ** 2).sum(axis=-1)), axis=1)
    np.testing.assert_allclose(got["joint_knn"], distances[:, :3].mean(axis=1), rtol=1e-6)
    # latent_residual_knn: the k-th distance in the same coordinates without the input
    ref, query = (np.hstack(coordinates(a)[1:]) for a in (train, x))
    distances = np.sort(np.sqrt(((query[:, None] - ref[None]) ** 2).sum(axis=-1)), axis=1)
    np.testing.assert_allclose(got["latent_residual_knn"], distances[:, 2], rtol=1e-6)


def test_likelihood_regret_is_never_negative_and_grows_where_the_encoder_is_wrong():
    model = model_of(VAEConfig([6], [8], 2))
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(30, 6)), dtype=torch.float32)
    regret = likelihood_regret(model, x, torch.Generator().manual_seed(0), steps=15, lr=0.1, n_samples=2)
    assert regret.shape == (30,) and (regret >= 0).all() and (regret > 0).any()
    # an encoder whose posterior means are pushed far off leaves much more to gain: the
    # regret measures how far q(z|x) is from the best posterior for x
    with torch.no_grad():
        model.to_mu.bias.add_(4.0)
    worse = likelihood_regret(model, x, torch.Generator().manual_seed(0), steps=15, lr=0.1, n_samples=2)
    assert worse.mean() > regret.mean()
    for p in model.parameters():
        assert p.grad is None  # the decoder and encoder are untouched


def test_likelihood_regret_is_seeded_through_compute_scores():
    model = model_of(VAEConfig([6], [8], 2))
    x = np.random.default_rng(1).normal(size=(12, 6)).astype(np.float32)
    a, b = (compute_scores(model, x, score_params(["likelihood_regret"], batch_size=5), seed=3)["likelihood_regret"]
            for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all()


def test_combined_averages_its_components_scaled_by_their_validation_median_and_iqr():
    validation = {"a": np.array([0.0, 1.0, 2.0, 3.0, 4.0]), "b": np.array([10.0, 10.0, 20.0, 30.0, 30.0])}
    scales = fit_combination(validation, ["a", "b"])
    assert scales == {"a": [2.0, 2.0], "b": [20.0, 20.0]}
    got = combined({"a": np.array([2.0, 6.0]), "b": np.array([20.0, 20.0])}, scales)
    np.testing.assert_allclose(got, [0.0, 1.0])  # (0 + 0) / 2 and ((6 - 2) / 2 + 0) / 2
    assert fit_combination({"c": np.ones(4)}, ["c"]) == {"c": [1.0, 1.0]}  # no spread: scale 1


def test_score_splits_scales_combined_on_the_validation_split(params):
    from vae_anomaly.pipeline import score_splits

    model = model_of(VAEConfig([5], [8], 2))
    rng = np.random.default_rng(0)
    features = {split: rng.normal(size=(n, 5)).astype(np.float32) for split, n in (("train", 60), ("val", 30), ("test", 20))}
    score = {**score_params(["reconstruction_mse", "latent_knn", "combined"]), "combine": ["reconstruction_mse", "latent_knn"]}
    got = score_splits(model, features, score, seed=0, splits=("test",))
    assert list(got) == ["test"]
    val = score_splits(model, features, score, seed=0, splits=("val",))["val"]
    scales = fit_combination(val, ["reconstruction_mse", "latent_knn"])
    np.testing.assert_allclose(got["test"]["combined"], combined(got["test"], scales))
    params["score"].update(names=["reconstruction_mse", "combined"], primary="combined",
                           combine=["reconstruction_mse", "iwae"])
    with pytest.raises(ParamsError, match=r"score.combine = \['reconstruction_mse', 'iwae'\].*\('iwae' is not one\)"):
        validate(params)


def test_score_splits_uses_the_reference_it_is_given(monkeypatch):
    """The score stage fits the training reference once, writes it and scores with it."""
    from vae_anomaly import pipeline

    model = model_of(VAEConfig([5], [8], 2))
    rng = np.random.default_rng(0)
    features = {split: rng.normal(size=(n, 5)).astype(np.float32) for split, n in (("train", 60), ("val", 30), ("test", 20))}
    score = score_params(["reconstruction_mse", "latent_knn", "latent_residual_knn"])
    expected = pipeline.score_splits(model, features, score, seed=0)
    reference = pipeline.training_reference(model, features["train"], score)
    monkeypatch.setattr(pipeline, "fit_reference", lambda *a: pytest.fail("fitted the reference again"))
    got = pipeline.score_splits(model, features, score, seed=0, reference=reference)
    for split in expected:
        for name in score["names"]:
            np.testing.assert_array_equal(got[split][name], expected[split][name])


class FixedReconstruction(VAE):
    """A "VAE" whose reconstruction of every image is the same flat grey: the residual is the
    image minus 0.5, so a score of the residual can be checked by hand."""

    def encode(self, x):
        return torch.zeros(len(x), self.config.latent_dim), torch.zeros(len(x), self.config.latent_dim)

    def decode(self, z):
        return torch.zeros(len(z), *self.config.input_shape)  # logits 0: p = 0.5 everywhere


@torch.no_grad()
def test_smoothed_reconstruction_error_ranks_a_wrong_shape_above_fine_texture():
    """Both images differ from the reconstruction by the same per-pixel error energy, but one
    as a checkerboard (texture, averaged away by the low-pass) and one as a bright blob (a
    shape): the plain error ties them, the smoothed one ranks the blob far above."""
    model = FixedReconstruction(VAEConfig([1, 16, 16], [8], 2, likelihood="bernoulli")).eval()
    checker = 0.5 + 0.25 * (-1.0) ** (np.add.outer(np.arange(16), np.arange(16)))
    blob = np.full((16, 16), 0.5)
    blob[4:12, 4:12] += 0.5  # the same summed squared residual as the checkerboard's
    x = torch.as_tensor(np.stack([checker, blob])[:, None], dtype=torch.float32)
    plain = compute_scores(model, x.numpy(), score_params(["reconstruction_mse"]), seed=0)["reconstruction_mse"]
    smoothed = smoothed_reconstruction_mse(model, x, torch.Generator())
    assert plain[0] == pytest.approx(plain[1])
    assert smoothed[1] > 20 * smoothed[0]
    from scipy.ndimage import gaussian_filter
    expected = np.square(gaussian_filter((x - 0.5).numpy(), (0, 0, 1.0, 1.0))).reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(smoothed.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="needs images"):
        smoothed_reconstruction_mse(model, torch.zeros(2, 256), torch.Generator())


class PatternReconstruction(FixedReconstruction):
    """Reconstructs every input as one fixed image, ``pattern``."""

    def __init__(self, config, pattern):
        super().__init__(config)
        self.logits = torch.logit(torch.as_tensor(pattern, dtype=torch.float32))

    def decode(self, z):
        return self.logits.expand(len(z), *self.config.input_shape)


@torch.no_grad()
def test_ssim_error_ranks_a_missing_stroke_above_a_brighter_image():
    """The reconstruction is a ramp with a stroke. An input 0.1 brighter everywhere has five
    times the squared error of the input that lacks the stroke: the plain error ranks the
    brightness first, SSIM (scikit-image's, checked against it) the missing structure, and a
    perfect reconstruction scores 0. An image smaller than SSIM's window uses the largest odd one."""
    from skimage.metrics import structural_similarity

    pattern = np.tile(np.linspace(0.3, 0.7, 16), (16, 1))
    pattern[8, 2:14] += 0.2
    no_stroke = pattern.copy()
    no_stroke[8, 2:14] -= 0.2
    x = np.stack([pattern + 0.1, no_stroke, pattern])[:, None]
    model = PatternReconstruction(VAEConfig([1, 16, 16], [8], 2, likelihood="bernoulli"), pattern).eval()
    plain = compute_scores(model, x, score_params(["reconstruction_mse"]), seed=0)["reconstruction_mse"]
    ssim = ssim_error(model, torch.as_tensor(x, dtype=torch.float32), torch.Generator()).numpy()
    assert plain[0] > 5 * plain[1] and ssim[1] > 3 * ssim[0]
    expected = 1 - structural_similarity(np.float32(no_stroke)[None].astype(np.float64), np.float32(pattern)[None].astype(np.float64),
                                         data_range=1.0, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
    assert ssim[1] == pytest.approx(expected, rel=1e-5) and ssim[2] == pytest.approx(0.0, abs=1e-5)
    small = FixedReconstruction(VAEConfig([1, 8, 8], [8], 2, likelihood="bernoulli")).eval()
    assert np.isfinite(ssim_error(small, torch.rand(2, 1, 8, 8), torch.Generator()).numpy()).all()
    with pytest.raises(ValueError, match="needs images"):
        ssim_error(model, torch.zeros(2, 256), torch.Generator())


@torch.no_grad()
def test_hog_error_sees_an_edge_turned_that_the_squared_error_barely_sees():
    """The reconstruction is a vertical bar. A copy 0.35 brighter everywhere has twice the squared
    error of the same bar turned horizontal, but the same histograms of oriented gradients
    (scikit-image's, checked against it), and the turned bar's differ: HOG counts the edges'
    directions, normalised over blocks, not their brightness. A perfect reconstruction scores 0;
    colour images and images smaller than two cells a side get a descriptor too."""
    from skimage.feature import hog

    pattern = np.zeros((16, 16))
    pattern[2:14, 7:9] = 0.6
    turned = pattern.T.copy()
    x = np.stack([pattern + 0.35, turned, pattern])[:, None]
    model = PatternReconstruction(VAEConfig([1, 16, 16], [8], 2, likelihood="bernoulli"), pattern).eval()
    plain = compute_scores(model, x, score_params(["reconstruction_mse"]), seed=0)["reconstruction_mse"]
    error = hog_error(model, torch.as_tensor(x, dtype=torch.float32), torch.Generator()).numpy()
    assert plain[0] > 2 * plain[1] and error[0] == pytest.approx(0.0, abs=1e-6) and error[1] > 1
    options = {"orientations": 9, "pixels_per_cell": (4, 4), "cells_per_block": (2, 2)}
    expected = np.square(hog(np.float32(turned).astype(np.float64), **options)
                         - hog(np.float32(pattern).astype(np.float64), **options)).sum()
    assert error[1] == pytest.approx(expected, rel=1e-5) and error[2] == pytest.approx(0.0, abs=1e-6)
    assert image_hog(np.random.default_rng(0).random((2, 3, 16, 16))).shape == (2, 9 * 2 * 2 * 3 * 3)
    small = FixedReconstruction(VAEConfig([1, 4, 4], [8], 2, likelihood="bernoulli")).eval()
    assert np.isfinite(hog_error(small, torch.rand(2, 1, 4, 4), torch.Generator()).numpy()).all()
    with pytest.raises(ValueError, match="needs images"):
        hog_error(model, torch.zeros(2, 256), torch.Generator())


@torch.no_grad()
def test_negative_elbo_averages_its_posterior_samples():
    # A linear decoder x_hat = W z + b makes the expectation exact: under q = N(mu, diag var),
    # E ||x - W z - b||^2 = ||x - W mu - b||^2 + sum_j var_j ||W_j||^2. One sample misses it
    # by up to a third here; 4,000 averaged come within 2 %.
    torch.manual_seed(0)
    model = VAE(VAEConfig([6], [], 2)).eval()
    x = 2 * torch.randn(5, 6)
    mu, logvar = model.encode(x)
    w, b = model.decoder[0].weight, model.decoder[0].bias
    expected_sse = (x - mu @ w.T - b).pow(2).sum(1) + (logvar.exp() * w.pow(2).sum(0)).sum(1)
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    expected = expected_sse + 3 * math.log(math.pi) + kl  # Gaussian, variance 1/2, D = 6
    one = negative_elbo(model, x, torch.Generator().manual_seed(1), n_samples=1)
    many = negative_elbo(model, x, torch.Generator().manual_seed(1), n_samples=4000)
    assert ((one - expected).abs() / expected).max() > 0.1
    torch.testing.assert_close(many, expected, rtol=0.02, atol=0.0)


def test_compute_scores_is_deterministic_and_batched():
    torch.manual_seed(0)
    model = VAE(VAEConfig([5], [8], 2))
    x = np.random.default_rng(0).normal(size=(50, 5)).astype(np.float32)
    names = ["negative_elbo", "reconstruction_mse"]
    a = compute_scores(model, x, score_params(names, batch_size=7, elbo_samples=4), seed=0)
    b = compute_scores(model, x, score_params(names, batch_size=7, elbo_samples=4), seed=0)
    np.testing.assert_array_equal(a["negative_elbo"], b["negative_elbo"])
    full = compute_scores(model, x, score_params(["reconstruction_mse"], batch_size=64), seed=0)
    np.testing.assert_allclose(a["reconstruction_mse"], full["reconstruction_mse"], rtol=1e-5)
    assert a["negative_elbo"].shape == (50,)

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from vae_anomaly.errors import UserError
from vae_anomaly.model.likelihoods import bernoulli_nll, gaussian_nll, kl_to_standard_normal
from vae_anomaly.model.optim import FusedAdam
from vae_anomaly.model.schedules import kl_weight, reaches_full_beta
from vae_anomaly.model.training import fit, seed_everything
from vae_anomaly.model.vae import VAE, VAEConfig, build_model, load_model, save_model
from vae_anomaly.pipeline import posterior_collapse


def schedule(name, **kw):
    base = {"kl_schedule": name, "kl_warmup_epochs": 4, "kl_cycles": 2, "kl_ramp_fraction": 0.5, "epochs": 8}
    return {**base, **kw}


def test_constant_schedule():
    assert [kl_weight(e, 2.0, schedule("constant")) for e in range(3)] == [2.0, 2.0, 2.0]


def test_monotonic_schedule_hand_computed():
    got = [kl_weight(e, 2.0, schedule("monotonic")) for e in range(6)]
    assert got == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_monotonic_without_warmup_is_constant():
    assert kl_weight(0, 3.0, schedule("monotonic", kl_warmup_epochs=0)) == 3.0


def test_cyclical_schedule_hand_computed():
    # 8 epochs, 2 cycles of 4 epochs, rising over the first half (2 epochs) of each
    got = [kl_weight(e, 1.0, schedule("cyclical")) for e in range(8)]
    assert got == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0]


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(dim=1)
    torch.testing.assert_close(kl_to_standard_normal(mu, logvar), expected)


def test_gaussian_nll_is_log_density_with_variance_half():
    x, x_hat = torch.randn(4, 6), torch.randn(4, 6)
    expected = -torch.distributions.Normal(x_hat, 0.5**0.5).log_prob(x).sum(dim=1)
    torch.testing.assert_close(gaussian_nll(x, x_hat), expected)


def test_architecture_is_mirrored():
    model = VAE(VAEConfig([30], [128, 64], 8))
    enc = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    dec = [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert enc == [128, 64] and model.to_mu.out_features == 8
    assert dec == [64, 128, 30]
    assert isinstance(model.decoder[-2], torch.nn.Linear)  # linear output (then a reshape)


def test_mnist_reference_model_has_the_reference_parameter_count():
    # pytorch/examples vae: 784-400-20 encoder, 20-400-784 decoder: 652,824 parameters
    model = build_model(VAEConfig([1, 28, 28], [400], 20, likelihood="bernoulli"))
    assert sum(p.numel() for p in model.parameters()) == 652_824


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_conv_vae_trains_a_step_on_cpu(kind):
    torch.manual_seed(0)
    model = build_model(VAEConfig([1, 28, 28], [32], 4, "conv", [8, 16], "bernoulli", kind))
    x = torch.rand(16, 1, 28, 28)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    recon, kl = model.loss_terms(x)
    (recon + kl).mean().backward()
    optimizer.step()
    assert model.decode(model.encode(x)[0]).shape == x.shape
    trained = [(a, b) for a, b in zip(before, model.parameters()) if b.grad is not None]
    assert trained and all(not torch.equal(a, b) for a, b in trained)
    assert (kl == 0).all() if kind == "ae" else (kl > 0).all()


def test_conv_rejects_shapes_it_cannot_mirror():
    with pytest.raises(UserError, match="multiples of 4"):
        build_model(VAEConfig([1, 10, 10], [8], 2, "conv", [4, 4]))
    with pytest.raises(UserError, match="needs images"):
        build_model(VAEConfig([30], [8], 2, "conv"))


def test_bernoulli_nll_is_summed_bce():
    x = torch.rand(3, 1, 2, 2).round()
    logits = torch.randn(3, 1, 2, 2)
    expected = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(dim=1)
    torch.testing.assert_close(bernoulli_nll(x, logits), expected)


def train_params(**kw):
    base = {"seed": 0, "epochs": 5, "batch_size": 32, "lr": 1e-2, "kl_schedule": "monotonic",
            "kl_warmup_epochs": 2, "kl_cycles": 1, "kl_ramp_fraction": 0.5, "patience": 2, "device": "cpu"}
    return {**base, **kw}


def tiny_data(n=256, d=6, seed=0):
    """n samples of one fixed 2-D linear-Gaussian model (the seed picks the samples)."""
    weights = np.random.default_rng(123).normal(size=(2, d))
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 2)) @ weights + 0.1 * rng.normal(size=(n, d))).astype(np.float32)


def run_fit(**kw):
    seed_everything(0)
    model = VAE(VAEConfig([6], [16], 2))
    history = fit(model, tiny_data(), tiny_data(64, seed=1), 1.0, train_params(**kw), torch.device("cpu"))
    return model, history


def test_fit_lowers_validation_loss_and_logs_schedule():
    _, history = run_fit(epochs=10, patience=10)
    assert [row["kl_weight"] for row in history[:3]] == [0.0, 0.5, 1.0]
    assert history[-1]["train_recon"] < history[0]["train_recon"]
    assert history[-1]["val_loss"] < history[2]["val_loss"]  # the first epoch at full beta


def test_early_stopping_stops_before_max_epochs():
    _, history = run_fit(epochs=200, patience=1, lr=0.05)
    assert len(history) < 200


def test_early_stopping_restores_the_best_epochs_weights():
    long_model, history = run_fit(epochs=200, patience=3, lr=0.05)
    at_full_beta = [row for row in history if row["kl_weight"] == 1.0]
    best = min(at_full_beta, key=lambda row: row["val_loss"])["epoch"]
    assert best < len(history)  # training went on past the best epoch, so restoring matters
    # The same seed trained for exactly `best` epochs follows the same path and ends there.
    short_model, _ = run_fit(epochs=best, patience=3, lr=0.05)
    for (name, a), b in zip(long_model.state_dict().items(), short_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_warm_up_epochs_do_not_count_towards_early_stopping():
    # lr = 0: the weights never change, so the validation loss moves by sampling noise alone
    # and, counted from the first epoch, would stop a patience of 1 within a few epochs.
    _, history = run_fit(epochs=200, patience=1, lr=0.0, kl_warmup_epochs=10)
    assert [row["kl_weight"] < 1.0 for row in history[:11]] == [True] * 10 + [False]
    assert len(history) >= 12  # the first full-beta epoch sets the best; one more can stop it


def test_schedules_that_never_reach_full_beta_are_detected():
    assert reaches_full_beta(schedule("monotonic", kl_warmup_epochs=7))
    assert not reaches_full_beta(schedule("monotonic", kl_warmup_epochs=8))  # epochs 0 to 7
    assert reaches_full_beta(schedule("cyclical", kl_ramp_fraction=0.5))
    assert not reaches_full_beta(schedule("cyclical", kl_ramp_fraction=1.0))
    assert reaches_full_beta(schedule("constant"))


def test_non_finite_validation_loss_names_the_epoch():
    model = VAE(VAEConfig([6], [16], 2))
    val = tiny_data(64, seed=1)
    val[3, 2] = np.inf  # training data finite, so only the validation loss goes wrong (NaN is a missing value)
    with pytest.raises(UserError, match=r"^the validation loss at epoch 1 is (inf|nan);.*train.lr"):
        fit(model, tiny_data(), val, 1.0, train_params(), torch.device("cpu"))


def test_same_seed_same_weights():
    a, _ = run_fit()
    b, _ = run_fit()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_non_finite_loss_names_epoch_and_batch():
    model = VAE(VAEConfig([6], [16], 2))
    data = tiny_data()
    data[0, 0] = np.inf
    with pytest.raises(UserError, match=r"epoch 1, batch 1.*train.lr"):
        fit(model, data, tiny_data(64), 1.0, train_params(batch_size=512), torch.device("cpu"))


def test_checkpoint_round_trip_and_bad_file(tmp_path):
    model, _ = run_fit(epochs=1)
    path = tmp_path / "model.pt"
    save_model(model, path)
    loaded = load_model(path)
    x = torch.as_tensor(tiny_data(8))
    torch.testing.assert_close(loaded.encode(x)[0], model.eval().encode(x)[0])
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable model checkpoint"):
        load_model(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(UserError, match="not written by this project"):
        load_model(path)


def test_a_collapsed_posterior_is_detected_and_warned_about(caplog):
    torch.manual_seed(0)
    model = build_model(VAEConfig([6], [8], 3))
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    assert posterior_collapse(model, x, batch_size=16) == {"active_dims": 3, "posterior_collapse": False}
    with torch.no_grad():  # q(z|x) = N(0, I) = p(z) for every x: no dimension carries information
        for layer in (model.to_mu, model.to_logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    with caplog.at_level(logging.WARNING, logger="vae_anomaly"):
        assert posterior_collapse(model, x, batch_size=16) == {"active_dims": 0, "posterior_collapse": True}
    assert "posterior collapse: none of the 3 latent dimensions" in caplog.text
    plain = build_model(VAEConfig([6], [8], 3, kind="ae"))
    assert posterior_collapse(plain, x, batch_size=16) == {"active_dims": None, "posterior_collapse": None}


def test_fused_adam_updates_as_torch_optim_adam_fused_bit_for_bit():
    torch.manual_seed(0)
    ours, theirs = VAE(VAEConfig([6], [16], 2)), VAE(VAEConfig([6], [16], 2))
    theirs.load_state_dict(ours.state_dict())
    ours.to_logvar.bias.requires_grad_(False)  # a parameter without a gradient is left alone
    theirs.to_logvar.bias.requires_grad_(False)
    optimizers = {
        "ours": (ours, FusedAdam(ours.parameters(), lr=0.01)),
        "torch": (theirs, torch.optim.Adam(theirs.parameters(), lr=0.01, fused=True)),
    }
    x = torch.as_tensor(tiny_data(32))
    for step in range(5):
        for model, optimizer in optimizers.values():
            torch.manual_seed(step)  # the same posterior samples
            recon, kl = model.loss_terms(x)
            optimizer.zero_grad()
            (recon + kl).mean().backward()
            optimizer.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(ours.encoder[1].weight, VAE(VAEConfig([6], [16], 2)).encoder[1].weight)


def test_training_never_imports_torch_dynamo():
    """torch.optim's optimizers import torch._dynamo on first use (1.3 CPU seconds, 150 MB):
    neither our fit nor the deep baselines' use one."""
    code = """
import sys
import numpy as np
import torch
from vae_anomaly.evaluation.baselines import build_detector, deep_budget
from vae_anomaly.model.vae import VAE, VAEConfig
from vae_anomaly.model.training import fit
x = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
train = {"seed": 0, "epochs": 2, "batch_size": 16, "lr": 1e-3, "kl_schedule": "constant", "patience": 2}
fit(VAE(VAEConfig([6], [8], 2)), x, x, 1.0, train, torch.device("cpu"))
params = {"model": {"hidden_dims": [8], "latent_dim": 2}, "train": train,
          "baselines": {"seed": 0, "knn_neighbors": 5}}
for name in ("autoencoder", "vae"):
    build_detector(name, params["baselines"], deep_budget(params, x), (6,), "cpu").fit(x.astype(np.float64))
print("torch._dynamo" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"CI": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "False"

"""The benchmark's workloads: training and scoring in this process, against their floors
(benchmarks/floors.py) and PyOD's VAE, and a detector fitted and scored from scratch.

- Training: the MLP VAE 784-400-20 (Bernoulli) and the conv VAE, trained by the project's
  ``fit`` on N images with a tenth as many validation images (``fit`` checks them every epoch,
  so their forward pass is in the floor too), batch 128. One epoch's time is
  (t(3 epochs) - t(1 epoch)) / 2 (conv: t(2) - t(1)), each the best of the repeats, after an
  untimed run: setup and warm-up cancel.
- PyOD: ``pyod.models.vae.VAE`` with the same layers (784-400-20-400-784), latent size, batch
  and learning rate, timed the same way in the same process with the same thread count (the
  difference also cancels the scoring pass its ``fit`` ends with): once as PyOD ships it
  (dropout 0.2, per-sample standardisation in its data loader, Adam weight decay 1e-5), once
  without dropout and standardisation, which ours does not have. Its loss is MSE, ours
  Bernoulli (slightly more elementwise work for us). Reference rows, with no target:
  "5x faster than PyOD per epoch" is not possible, both running the same products.
- Oversubscription check: the MLP epoch again on one thread. Where that is faster, other work
  holds the cores and every multi-threaded figure of the run is skewed: PyTorch's threads
  wait for each other at every operation, and a descheduled one stalls them all (on the
  2-core machine under load we saw epochs 10-30 times slower on 2 threads than on 1).
- Scoring: ``negative_elbo`` with 100 posterior samples and ``iwae`` with K = 100 over N images,
  through the score stage's ``compute_scores`` with its ``score.batch_size``; floor = N encoder
  passes + N*K decoder passes.
- Time to a scored detector: what a user waits for, whole process (interpreter start, imports,
  fit, scoring): ``Detector().fit(X_train).decision_function(X_test)`` with the default
  settings on the CPU, against PyOD's VAE with the default model's layers (30-128-64-8),
  60 epochs, batch 128, on the default synthetic data (saved once, read by both); each
  reports its test ROC-AUC, so the row says what each second bought.

Data: real MNIST images when a local torchvision root is given (``--data-root`` or
$VAE_ANOMALY_DATA_ROOT; the md5-checked loader of ``vae_anomaly.data.images``), else uniform random
pixels of the same shape. The output says which.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmarks.floors import best_seconds, epoch_floor_flop, epoch_profile, epoch_timing, scoring_floor_flop
from benchmarks.project import ROOT, run_tool, tool_env
from vae_anomaly.data import images as image_sources
from vae_anomaly.data.synthetic import make_synthetic
from vae_anomaly.model.training import evaluate_loss, fit, seed_everything
from vae_anomaly.model.vae import VAE, VAEConfig, build_model
from vae_anomaly.scoring.scores import compute_scores

log = logging.getLogger(__name__)

IMAGE_SHAPE = [1, 28, 28]
# pytorch/examples vae's MNIST model, and the conv VAE with the project's default channels.
MLP_VAE = VAEConfig(IMAGE_SHAPE, [400], 20, likelihood="bernoulli")
CONV_VAE = VAEConfig(IMAGE_SHAPE, [400], 20, "conv", [32, 64], "bernoulli")
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
SCORE_SAMPLES = 100  # K of iwae, and the posterior samples of negative_elbo


@dataclass(frozen=True)
class Sizes:
    n_train: int  # training images per epoch (validation: a tenth as many)
    n_score: int  # images scored
    matmul_n: int  # side of the square matrices of the rate measurement
    repeats: int  # timings per measurement; the best is kept
    fashion_scale: float  # share of Fashion-MNIST's split sizes (random data only)
    shrink_pipeline: bool  # dvc runs on tiny params, as tests/test_pipeline.py does
    sweep_epochs: int  # train.epochs of each sweep experiment
    detector_rows: int  # synthetic training rows of time_to_detector; 0 = params.yaml's
    detector_epochs: int  # epochs of time_to_detector (ours and PyOD's); 0 = the defaults


FULL = Sizes(10_000, 10_000, 2048, 2, 1.0, False, 10, 0, 0)
QUICK = Sizes(1_000, 500, 1024, 1, 0.1, True, 2, 500, 3)


def root_source(data_root: str) -> str:
    """Where the torchvision root came from, for reports/benchmark.json: the flag or the
    variable, not the folder, which is a path on one machine only."""
    return "a local torchvision root (" + ("--data-root" if data_root else f"${image_sources.DATA_ROOT_ENV}") + ")"


def mnist_like(data_root: str, sizes: Sizes) -> tuple[dict[str, np.ndarray], str]:
    """Train, validation and scoring images, float32 (N, 1, 28, 28) in [0, 1]: MNIST from a
    local torchvision root when one is given, else uniform random pixels; and which it is."""
    n_train, n_val, n_score = sizes.n_train, sizes.n_train // 10, sizes.n_score
    root = data_root or os.environ.get(image_sources.DATA_ROOT_ENV, "")
    if root:
        images = image_sources.load_torchvision("mnist", root, allow_download=False)
        train = images.train_images
        arrays = {
            "train": train[:n_train],
            "val": train[n_train : n_train + n_val],
            "score": images.test_images[:n_score],
        }
        return arrays, f"MNIST from {root_source(data_root)}"
    rng = np.random.default_rng(0)
    arrays = {
        name: rng.random((n, *IMAGE_SHAPE), dtype=np.float32)
        for name, n in (("train", n_train), ("val", n_val), ("score", n_score))
    }
    return arrays, "random pixels of MNIST's shape (no --data-root or $VAE_ANOMALY_DATA_ROOT)"


def train_params(epochs: int) -> dict[str, Any]:
    """params.yaml's train section for a timed ``fit``: constant KL weight, no early stop."""
    train = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]
    return {
        **train, "seed": 0, "epochs": epochs, "batch_size": BATCH_SIZE, "lr": LEARNING_RATE,
        "kl_schedule": "constant", "patience": epochs + 1, "device": "cpu",
    }


def fit_ours(config: VAEConfig, data: dict[str, np.ndarray], epochs: int, batch_size: int = BATCH_SIZE) -> None:
    """The project's ``fit`` of a fresh model, seeded, on the CPU."""
    seed_everything(0)
    model = build_model(config)
    params = {**train_params(epochs), "batch_size": batch_size}
    fit(model, data["train"], data["val"], 1.0, params, torch.device("cpu"))


def fit_pyod(data: dict[str, np.ndarray], epochs: int, matched: bool) -> None:
    """PyOD's VAE with our layers, latent size, batch and learning rate; otherwise as PyOD
    ships it (dropout 0.2, per-sample standardisation in its data loader), or, ``matched``,
    without those two, which our model does not have."""
    from pyod.models.vae import VAE as PyODVAE  # imported here: pyod takes seconds to import

    hidden, latent = MLP_VAE.hidden_dims, MLP_VAE.latent_dim
    extra = {"dropout_rate": 0.0, "preprocessing": False} if matched else {}
    detector = PyODVAE(
        encoder_neuron_list=hidden, decoder_neuron_list=list(reversed(hidden)),
        latent_dim=latent, batch_size=BATCH_SIZE, epoch_num=epochs, lr=LEARNING_RATE,
        verbose=0, random_state=0, device="cpu", **extra,
    )
    detector.fit(data["train"].reshape(len(data["train"]), -1))


GPU_TRAIN_IMAGES = 57_000  # the GPU target's epoch: MNIST's training images less a validation share


def gpu_section(sizes: Sizes) -> dict[str, Any]:
    """On a CUDA GPU, when there is one: the MLP VAE's epoch on 57,000 images (a tenth as
    many validating), through the project's ``fit`` with the data resident on the device (it
    copies the arrays there once; no DataLoader), at batch 128 and 1,024. Without a GPU,
    says so: the same ``fit`` runs on the CPU in every other row and in the tests."""
    if not torch.cuda.is_available():
        return {"device": None}
    n = max(1, int(GPU_TRAIN_IMAGES * sizes.n_train / FULL.n_train))
    rng = np.random.default_rng(0)
    data = {"train": rng.random((n, *IMAGE_SHAPE), dtype=np.float32),
            "val": rng.random((n // 10, *IMAGE_SHAPE), dtype=np.float32)}
    out: dict[str, Any] = {"device": torch.cuda.get_device_name(), "n_train": n}
    for batch in (BATCH_SIZE, 1024):
        def train(epochs: int) -> None:
            seed_everything(0)
            model = build_model(MLP_VAE).cuda()
            params = {**train_params(epochs), "batch_size": batch, "device": "cuda"}
            fit(model, data["train"], data["val"], 1.0, params, torch.device("cuda"))
            torch.cuda.synchronize()

        out[f"epoch_s_batch_{batch}"] = epoch_timing(train, sizes.repeats)["epoch_s"]
    return out


def compiled_epochs(config: VAEConfig, data: dict[str, np.ndarray]) -> tuple[Callable[[int], None], float]:
    """A lever, not what the project runs: ``fit``'s epoch (shuffled batches, a validation
    pass) with the training step (loss, backward, fused Adam) compiled by ``torch.compile``.
    Returns a function training ``epochs`` epochs of one seeded model and the compile time
    (both batch shapes of an epoch, the full and the last partial one)."""
    seed_everything(0)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, fused=True)
    xt, xv = torch.as_tensor(data["train"]), torch.as_tensor(data["val"])

    def step(xb: torch.Tensor) -> torch.Tensor:
        recon, kl = model.loss_terms(xb)
        loss = (recon + kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return torch.stack([recon.detach().sum(), kl.detach().sum()])

    compiled = torch.compile(step, dynamic=False)  # one graph per batch shape: randn needs concrete sizes
    start = time.perf_counter()
    compiled(xt[:BATCH_SIZE])
    if len(xt) % BATCH_SIZE:
        compiled(xt[: len(xt) % BATCH_SIZE])
    compile_s = time.perf_counter() - start

    def train(epochs: int) -> None:
        generator = torch.Generator().manual_seed(0)
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(xt), generator=generator)
            sums = [compiled(xt[order[b : b + BATCH_SIZE]]) for b in range(0, len(xt), BATCH_SIZE)]
            torch.stack(sums).sum(dim=0).tolist()
            evaluate_loss(model, xv, BATCH_SIZE)

    return train, compile_s


def score_seconds(model: VAE, x: np.ndarray, name: str, batch_size: int, repeats: int) -> float:
    """Best wall time of scoring every row of ``x`` with the score ``name`` through the score
    stage's ``compute_scores``, K = 100 samples per image."""
    return best_seconds(
        lambda: compute_scores(model, x, {
            "names": [name], "batch_size": batch_size, "elbo_samples": SCORE_SAMPLES,
            "iwae_samples": SCORE_SAMPLES, "complexity_codec": "jpeg2000", "knn_neighbors": 5,
            "regret_steps": 20, "regret_lr": 0.1, "combine": [],
        }, seed=0),
        repeats,
    )


def training_section(data: dict[str, np.ndarray], sizes: Sizes) -> dict[str, Any]:
    """Epoch times of our MLP and conv VAEs with their floors, the MLP on one thread, and
    PyOD's VAE as shipped and matched."""
    n_train, n_val = len(data["train"]), len(data["val"])
    training: dict[str, Any] = {}
    for name, config in (("mlp_784_400_20", MLP_VAE), ("conv", CONV_VAE)):
        log.info("training epoch: %s", name)
        many = 3 if name.startswith("mlp") else 2  # a conv epoch is ten times longer
        training[name] = {
            **epoch_timing(lambda e: fit_ours(config, data, e), sizes.repeats, many=many),
            "n_train": n_train, "n_val": n_val,
            "floor_flop": epoch_floor_flop(build_model(config), n_train, n_val),
        }
    # Where the MLP epoch's time goes: its matrix products against everything else.
    log.info("training epoch: mlp_784_400_20 under torch.profiler")
    training["mlp_784_400_20"]["profile"] = epoch_profile(lambda e: fit_ours(MLP_VAE, data, e))
    # The same epoch on one thread: faster than on all of them means other work occupies the
    # cores, and every thread-parallel figure of this run is then skewed (threads wait for
    # each other at every operation).
    threads = torch.get_num_threads()
    if threads > 1:
        log.info("training epoch: mlp_784_400_20 on 1 thread")
        torch.set_num_threads(1)
        try:
            one = epoch_timing(lambda e: fit_ours(MLP_VAE, data, e), sizes.repeats)["epoch_s"]
        finally:
            torch.set_num_threads(threads)
        training["mlp_784_400_20"]["epoch_s_1_thread"] = one
    # Levers: a larger batch (the result changes: docs/performance.md) and a compiled step.
    log.info("training epoch: mlp_784_400_20 at batch %d", 2 * BATCH_SIZE)
    training["mlp_batch_256"] = {
        **epoch_timing(lambda e: fit_ours(MLP_VAE, data, e, batch_size=2 * BATCH_SIZE), sizes.repeats),
        "floor_flop": training["mlp_784_400_20"]["floor_flop"],
    }
    log.info("training epoch: mlp_784_400_20, step compiled by torch.compile")
    train, compile_s = compiled_epochs(MLP_VAE, data)
    training["mlp_compiled_step"] = {**epoch_timing(train, sizes.repeats), "compile_s": compile_s,
                                     "floor_flop": training["mlp_784_400_20"]["floor_flop"]}
    for name, matched in (("pyod_vae", False), ("pyod_vae_matched", True)):
        log.info("training epoch: %s", name)
        training[name] = {**epoch_timing(lambda e: fit_pyod(data, e, matched), sizes.repeats),
                          "n_train": n_train}
    return training


def scoring_section(data: dict[str, np.ndarray], sizes: Sizes) -> dict[str, Any]:
    """negative_elbo and iwae, K = 100, over the scoring images, with their floors."""
    model = build_model(MLP_VAE)  # untrained: the cost of scoring does not depend on the weights
    batch = yaml.safe_load((ROOT / "params.yaml").read_text())["score"]["batch_size"]
    scoring = {}
    for name in ("negative_elbo", "iwae"):
        log.info("scoring: %s, K = %d", name, SCORE_SAMPLES)
        scoring[name] = {
            "k": SCORE_SAMPLES, "n": len(data["score"]), "batch_size": batch,
            "floor_flop": scoring_floor_flop(model, len(data["score"]), SCORE_SAMPLES),
            "seconds": score_seconds(model, data["score"], name, batch, sizes.repeats),
        }
    return scoring


# Each script: argv[1] the .npz (train, test, test_label), argv[2] the epochs (0 = default);
# prints {"roc_auc": ...} on its last line of stdout.
OURS_DETECTOR = """
import json, sys
import numpy as np
from sklearn.metrics import roc_auc_score
from vae_anomaly import Detector
data, epochs = np.load(sys.argv[1]), int(sys.argv[2])
train = {"device": "cpu"}
if epochs:  # a short run (--quick): the KL weight reaches beta within it
    train.update(epochs=epochs, kl_warmup_epochs=1)
scores = Detector(train=train).fit(data["train"]).decision_function(data["test"])
print(json.dumps({"roc_auc": float(roc_auc_score(data["test_label"], scores))}))
"""
PYOD_DETECTOR = """
import json, sys
import numpy as np
from sklearn.metrics import roc_auc_score
from pyod.models.vae import VAE

data, epochs = np.load(sys.argv[1]), int(sys.argv[2])
detector = VAE(encoder_neuron_list=[128, 64], decoder_neuron_list=[64, 128], latent_dim=8,
               epoch_num=epochs or 60, batch_size=128, lr=1e-3, preprocessing=False, verbose=0,
               random_state=0, device="cpu")
scores = detector.fit(data["train"]).decision_function(data["test"])
print(json.dumps({"roc_auc": float(roc_auc_score(data["test_label"], scores))}))
"""


def timed_detector(script: str, npz: Path, epochs: int) -> tuple[float, float]:
    """Wall time of ``script`` as a fresh process (OMP_NUM_THREADS as the benchmark's), and
    the ROC-AUC it printed."""
    start = time.perf_counter()
    out = run_tool([sys.executable, "-c", script, str(npz), str(epochs)], ROOT, tool_env())
    seconds = time.perf_counter() - start
    return seconds, json.loads(out.strip().splitlines()[-1])["roc_auc"]


def time_to_detector(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """Whole-process time from nothing to test scores, ours (``Detector`` with its defaults)
    vs PyOD's VAE, on the default synthetic data, and the ROC-AUC each reaches."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    cfg = copy.deepcopy(params["data"]["synthetic"])
    if sizes.detector_rows:
        cfg["n_train"] = sizes.detector_rows
    splits = make_synthetic(cfg, params["data"]["seed"])
    npz = workdir / "time_to_detector.npz"
    np.savez(npz, train=splits.train, test=splits.test, test_label=splits.test_label)
    log.info("time to a scored detector: ours")
    ours_s, ours_auc = timed_detector(OURS_DETECTOR, npz, sizes.detector_epochs)
    log.info("time to a scored detector: PyOD VAE")
    pyod_s, pyod_auc = timed_detector(PYOD_DETECTOR, npz, sizes.detector_epochs)
    kind = "synthetic (--quick)" if sizes.detector_rows else "default synthetic"
    n, d = splits.train.shape
    return {
        "ours_s": ours_s, "pyod_s": pyod_s, "ours_roc_auc": ours_auc, "pyod_roc_auc": pyod_auc,
        "data": f"{kind}, {n} x {d} train, {len(splits.test)} test",
        "epochs": (f"{sizes.detector_epochs} each" if sizes.detector_epochs
                   else "ours: defaults (at most 60, early-stopped); PyOD: 60"),
    }

"""Compute floors: what a workload cannot take less than on this machine, and timing helpers.

- Matrix rate: the best float32 n x n product rate, measured here (the benchmark measures it
  before and after the rest and uses the higher). The compute floor of a workload is its
  matrix-product and convolution FLOPs, counted by PyTorch's ``FlopCounterMode`` from the
  model's layer sizes, at that rate. Elementwise work (activations, losses, Adam) is not in
  the floor, so it is a true lower bound.
- Training: one epoch of ``fit`` is a training step (loss forward and backward) per training
  sample and a loss evaluation per validation sample (``fit`` checks them every epoch).
- Scoring with K posterior samples: one encoder pass per sample and K decoder passes.
- Where an epoch's time goes: ``epoch_profile`` takes each operator's self time from
  ``torch.profiler`` over the same difference of two ``fit`` lengths as the epoch's timing; the
  matrix products' share of it, set against the floor, says how much of the gap is the products
  themselves (small batches run them below the n x n rate) and how much is everything else.
- Timings are the best of a few repeats: on a shared machine the best run is the one least
  disturbed by other work. An epoch is the difference of two ``fit`` lengths, so what a call
  does once (set-up, warm-up, a final scoring pass) cancels.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from vae_anomaly.model.vae import VAE


def flop_count(run: Callable[[], Any]) -> int:
    """FLOPs of the matrix products and convolutions ``run`` executes, forward and backward.

    PyTorch's FlopCounterMode reads the shapes of every matmul and convolution call, including
    those autograd makes; gradients autograd never computes (the input's) are not counted.
    """
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def training_flop_per_sample(model: VAE, batch: int = 8) -> float:
    """FLOPs of one training step (loss forward and backward), per sample."""
    x = torch.rand(batch, *model.config.input_shape)

    def step() -> None:
        recon, kl = model.loss_terms(x)
        (recon + kl).mean().backward()

    flops = flop_count(step)
    model.zero_grad(set_to_none=True)
    return flops / batch


@torch.no_grad()
def forward_flop_per_sample(model: VAE, batch: int = 8) -> float:
    """FLOPs of one loss evaluation without gradients (fit's validation pass), per sample."""
    x = torch.rand(batch, *model.config.input_shape)
    return flop_count(lambda: model.loss_terms(x)) / batch


def epoch_floor_flop(model: VAE, n_train: int, n_val: int) -> float:
    """Matrix FLOPs of one epoch of ``fit``: a training step per sample, a validation pass."""
    return n_train * training_flop_per_sample(model) + n_val * forward_flop_per_sample(model)


@torch.no_grad()
def scoring_floor_flop(model: VAE, n: int, k: int, batch: int = 8) -> float:
    """Matrix FLOPs of scoring ``n`` samples with ``k`` posterior samples each: one encoder
    pass per sample and ``k`` decoder passes."""
    x = torch.rand(batch, *model.config.input_shape)
    z = torch.randn(batch, model.config.latent_dim)
    encoder = flop_count(lambda: model.encode(x)) / batch
    decoder = flop_count(lambda: model.decode(z)) / batch
    return n * (encoder + k * decoder)


def best_seconds(run: Callable[[], Any], repeats: int) -> float:
    """The shortest of ``repeats`` timed runs: on a shared machine the best run is the one
    least disturbed by other work."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(n: int, repeats: int) -> float:
    """The best float32 n x n matrix-product rate, in FLOP/s (2 n^3 FLOP per product)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b  # warm-up: thread pool and allocator
    return 2 * n**3 / best_seconds(lambda: a @ b, max(3, repeats))


PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm")  # the matrix products of an MLP's step


def operator_seconds(run: Callable[[], Any]) -> dict[str, float]:
    """Self CPU seconds of each PyTorch operator ``run`` calls, from ``torch.profiler``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return {event.key: event.self_cpu_time_total / 1e6 for event in prof.key_averages()}


def epoch_profile(train: Callable[[int], Any], few: int = 1, many: int = 3, top: int = 6) -> dict[str, Any]:
    """Where one epoch of ``train(epochs)`` goes, per operator: (profile of ``many`` epochs -
    profile of ``few``) / (many - few), as :func:`epoch_timing` times it. ``products_s`` is the
    matrix products' self time (PRODUCT_OPS), ``operators_s`` every operator's, and
    ``top_operators`` the ``top`` largest, in seconds per epoch."""
    train(few)  # untimed: one-time set-up lands in neither profile
    short, long = operator_seconds(lambda: train(few)), operator_seconds(lambda: train(many))
    per_epoch = {name: (long[name] - short.get(name, 0.0)) / (many - few) for name in long}
    largest = sorted(per_epoch.items(), key=lambda item: -item[1])[:top]
    return {"products_s": sum(per_epoch.get(name, 0.0) for name in PRODUCT_OPS),
            "operators_s": sum(per_epoch.values()), "top_operators": dict(largest)}


def epoch_timing(train: Callable[[int], Any], repeats: int, few: int = 1, many: int = 3) -> dict[str, float]:
    """``epoch_s`` = (t(many) - t(few)) / (many - few) for ``train(epochs)``, each the best of
    ``repeats``: what is done once per call (model and data set-up, warm-up, a final scoring
    pass) cancels. Also the whole calls' times, and the first call's, untimed in the difference:
    what a process does once (importing the library; PyTorch's optimizers import
    ``torch._dynamo`` on their first step) would otherwise land in one side only."""
    start = time.perf_counter()
    train(few)
    first = time.perf_counter() - start
    t_few = best_seconds(lambda: train(few), repeats)
    t_many = best_seconds(lambda: train(many), repeats)
    return {"epoch_s": (t_many - t_few) / (many - few), f"fit_{few}_epochs_s": t_few,
            f"fit_{many}_epochs_s": t_many, f"first_fit_{few}_epochs_s": first}

"""Adam for the training loops (ours and the deep baselines'), without torch.optim.Optimizer.

Why not ``torch.optim.Adam``: every ``torch.optim.Optimizer`` method (the constructor's
``add_param_group``, ``zero_grad``, ``step``) goes through ``torch._disable_dynamo``, which
imports ``torch._dynamo`` on its first call: 1.3 CPU seconds and 150 MB of resident memory in
every process that trains, for a compiler these loops never use (PyTorch has no switch to
skip it). ``step`` also pays about 0.2 ms of Python per call in hooks and checks.
:class:`FusedAdam` keeps the state that ``torch.optim.Adam(fused=True)`` keeps and calls the
same public functional form, ``torch.optim.adam.adam(fused=True)``, hence the same fused
kernel with the same arguments: the same weights, bit for bit (tests/test_training.py).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.optim.adam import adam


class FusedAdam:
    """Adam (Kingma & Ba 2015) with torch.optim.Adam's defaults and state, one fused update
    per step; ``zero_grad`` and ``step`` as an optimizer's."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
    ):
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        # torch.optim.Adam's state, created as it creates it on the first step (fused: a
        # float32 step count on the parameter's device).
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self.exp_avgs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of the parameters that have a gradient, as torch.optim.Adam.step."""
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        adam(
            [self.params[i] for i in have], [self.params[i].grad for i in have],
            [self.exp_avgs[i] for i in have], [self.exp_avg_sqs[i] for i in have], [],
            [self.steps[i] for i in have],
            amsgrad=False, has_complex=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
            weight_decay=self.weight_decay, eps=self.eps, maximize=False, foreach=False,
            capturable=False, differentiable=False, fused=True, grad_scale=None, found_inf=None,
            decoupled_weight_decay=False,
        )

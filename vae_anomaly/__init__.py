"""Unsupervised anomaly detection with variational autoencoders: what the DVC stages share,
and :class:`Detector`, to fit and score from Python (docs/detector.md). The map of its
folders and what may import what: docs/architecture.md."""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Detector imports torch: imported on first use, so stages that need neither stay quick.
    if name == "Detector":
        from .detector.detector import Detector

        return Detector
    raise AttributeError(f"module 'vae_anomaly' has no attribute {name!r}")

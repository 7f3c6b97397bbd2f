"""score: per-sample anomaly scores of every split, from the trained model; for the test split
also the posterior statistics and the reconstruction quality that evaluate summarises, and for
tables each column's contribution (scoring/explanation.py), for images each one's anomaly map
(scoring/maps.py); and the training reference the
reference scores and the explanations compare with, which the detector stage packages."""
import logging

import numpy as np

from stages.paths import (FEATURES, MODEL, REFERENCE, SCORES_DIR, TEST_EXPLANATION, TEST_LATENT, TEST_MAPS,
                          TEST_RECONSTRUCTION)
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.data.splits import SPLITS
from vae_anomaly.io import read_arrays, require_finite, write_arrays
from vae_anomaly.model.vae import load_model, resolve_device
from vae_anomaly.params import load_params
from vae_anomaly.pipeline import score_splits, training_reference
from vae_anomaly.scoring.explanation import explain_rows, fit_explanation, squared_residuals
from vae_anomaly.scoring.latent import posterior_statistics
from vae_anomaly.scoring.maps import anomaly_maps, map_scale
from vae_anomaly.scoring.reconstruction import reconstruction_quality
from vae_anomaly.scoring.reference import reference_arrays

log = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    score_p = params["score"]
    log.info("read params.yaml: score=%s", score_p)
    model = load_model(MODEL, resolve_device(params["train"]["device"]))
    features = read_arrays(FEATURES, *SPLITS)
    reference = training_reference(model, features["train"], score_p)
    splits = score_splits(model, features, score_p, params["train"]["seed"], reference=reference)
    for split, scores in splits.items():
        for name, values in scores.items():
            require_finite(values, f"score {name} of the {split} split",
                           "the model cannot score these rows: check reports/train_metrics.json "
                           f"and the data, or leave {name} out of score.names")
        write_arrays(f"{SCORES_DIR}/{split}.npz", **scores)
    batch_size = score_p["batch_size"]
    write_arrays(TEST_LATENT, **posterior_statistics(model, features["test"], batch_size))
    write_arrays(TEST_RECONSTRUCTION, **reconstruction_quality(model, features["test"], batch_size))
    arrays = {} if reference is None else reference_arrays(reference)
    encoding = read_encoding(FEATURES)
    if encoding is not None:  # tables: why each test row scores as it does, and a baseline's answer
        explanation = fit_explanation(model, features["train"], encoding.feature_column(), batch_size)
        arrays.update({f"explanation_{k}": v for k, v in explanation.arrays().items()})
        write_arrays(TEST_EXPLANATION, ours=explain_rows(model, features["test"], explanation, batch_size),
                     squared_residual=squared_residuals(model, features["test"], explanation.feature_column, batch_size))
    if features["test"].ndim == 4:  # images: where each test image is anomalous, and the heat maps' scale
        write_arrays(TEST_MAPS, maps=anomaly_maps(model, features["test"], batch_size))
        arrays["explanation_map_scale"] = np.array(map_scale(anomaly_maps(model, features["train"], batch_size)))
    # Written even without reference scores (empty), so the folder's files never depend on
    # what an earlier run left there.
    write_arrays(REFERENCE, **arrays)


if __name__ == "__main__":
    run_stage(main)

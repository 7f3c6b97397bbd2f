"""baselines: PyOD detectors fitted on the training split, their scores on the test split;
the record of what was adapted to the data and which detectors failed."""
import logging

from stages.paths import BASELINE_EXPLANATION, BASELINE_FAILED, BASELINE_RECORD, BASELINE_SCORES, FEATURES
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.data.splits import SPLITS
from vae_anomaly.evaluation.baselines import DEEP_BASELINES, baseline_scores
from vae_anomaly.io import read_arrays, write_arrays, write_json
from vae_anomaly.parallel import usable_cores
from vae_anomaly.params import load_params

log = logging.getLogger(__name__)
# Detectors fitted at a time, one per core this process may use (taskset, a container's CPU
# set): each runs on one thread (parallel.one_thread).
JOBS = usable_cores()


def main() -> None:
    params = load_params()
    log.info("read params.yaml: baselines=%s model=%s train=%s", params["baselines"], params["model"], params["train"])
    # Resolved where the deep baselines run (the workers import torch; this process need not),
    # but an impossible 'cuda' stops the stage here, before any work.
    device = params["train"]["device"]
    if device == "cuda" and set(params["baselines"]["names"]) & set(DEEP_BASELINES):
        from vae_anomaly.model.vae import resolve_device

        resolve_device(device)
    features = read_arrays(FEATURES, *SPLITS)
    encoding = read_encoding(FEATURES)
    scores, record, per_column = baseline_scores(features, params, device, JOBS, encoding)
    write_arrays(BASELINE_SCORES, **scores)
    write_arrays(BASELINE_EXPLANATION, **per_column)  # tables: per-column scores of the detectors that have them
    write_json(BASELINE_FAILED, record["failed"])
    write_json(BASELINE_RECORD, record)


if __name__ == "__main__":
    run_stage(main)

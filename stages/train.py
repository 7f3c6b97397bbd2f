"""train: fit the VAE on normal training data, early-stopped on the validation split; each
epoch logged with DVCLive as it ends."""
import logging

import torch

from stages.paths import FEATURES, MODEL, TRAIN_METRICS, TRAINING_LOG
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.io import read_arrays, write_json
from vae_anomaly.model.training_log import epoch_log
from vae_anomaly.model.vae import resolve_device, save_model
from vae_anomaly.params import load_params
from vae_anomaly.pipeline import train_model

log = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    log.info("read params.yaml: model=%s train=%s", params["model"], params["train"])
    device = resolve_device(params["train"]["device"])
    features = read_arrays(FEATURES, "train", "val")  # not the test split: memory
    encoding = read_encoding(FEATURES)
    categorical = encoding.categorical_blocks() if encoding else []
    with epoch_log(TRAINING_LOG) as log_epoch:
        model, history, summary = train_model(features["train"], features["val"], params, device, log_epoch,
                                              categorical)
    log.info("logged %d epochs to %s (DVCLive)", len(history), TRAINING_LOG)
    save_model(model, MODEL)
    # CPU and CUDA kernels round differently, so the same params give other metrics there.
    write_json(TRAIN_METRICS, {**summary, "device": device.type, "torch": torch.__version__})


if __name__ == "__main__":
    run_stage(main)

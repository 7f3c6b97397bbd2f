"""train: fit the VAE on normal training data, early-stopped on the validation split; each
epoch logged with DVCLive as it ends."""
import torch

from vae_anomaly.io import log, read_arrays, run_stage, write_json
from vae_anomaly.models import resolve_device, save_model
from vae_anomaly.params import load_params
from vae_anomaly.pipeline import train_model
from vae_anomaly.training_log import epoch_log

FEATURES = "data/prepared/features.npz"
MODEL = "data/model.pt"
LOG_DIR = "reports/train"  # DVCLive's: metrics.json (the latest epoch), plots/metrics/*.tsv
METRICS = "reports/train_metrics.json"


def main() -> None:
    params = load_params()
    log.info("read params.yaml: model=%s train=%s", params["model"], params["train"])
    device = resolve_device(params["train"]["device"])
    features = read_arrays(FEATURES, "train", "val")  # not the test split: memory
    with epoch_log(LOG_DIR) as log_epoch:
        model, history, summary = train_model(features["train"], features["val"], params, device, log_epoch)
    log.info("logged %d epochs to %s (DVCLive)", len(history), LOG_DIR)
    save_model(model, MODEL)
    # CPU and CUDA kernels round differently, so the same params give other metrics there.
    write_json(METRICS, {**summary, "device": device.type, "torch": torch.__version__})


if __name__ == "__main__":
    run_stage(main)

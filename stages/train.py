"""train: fit the VAE on normal training data, early-stopped on the validation split."""
import torch

from vae_anomaly.io import log, read_arrays, run_stage, write_csv, write_json
from vae_anomaly.models import resolve_device, save_model
from vae_anomaly.params import load_params
from vae_anomaly.pipeline import train_model

FEATURES = "data/prepared/features.npz"
MODEL = "data/model.pt"
HISTORY = "reports/train/history.csv"
METRICS = "reports/train_metrics.json"


def main() -> None:
    params = load_params()
    log.info("read params.yaml: model=%s train=%s", params["model"], params["train"])
    device = resolve_device(params["train"]["device"])
    features = read_arrays(FEATURES)
    model, history, summary = train_model(features["train"], features["val"], params, device)
    save_model(model, MODEL)
    write_csv(HISTORY, {key: [row[key] for row in history] for key in history[0]})
    # CPU and CUDA kernels round differently, so the same params give other metrics there.
    write_json(METRICS, {**summary, "device": device.type, "torch": torch.__version__})


if __name__ == "__main__":
    run_stage(main)

"""detector: what scoring new data needs, in one folder: the trained model, the scaling and
reference of the training split, the threshold (``python -m vae_anomaly predict`` reads it)."""
from vae_anomaly.data import Scaling
from vae_anomaly.detector import Detector
from vae_anomaly.io import log, read_arrays, read_json, run_stage
from vae_anomaly.models import load_model, resolve_device
from vae_anomaly.params import load_params

FEATURES = "data/prepared/features.npz"
SCALING = "data/prepared/scaling.npz"
MODEL = "data/model.pt"
TRAIN_SCORES = "data/scores/train.npz"
VAL_SCORES = "data/scores/val.npz"
THRESHOLD = "reports/threshold.json"
DETECTOR = "data/detector"


def main() -> None:
    params = load_params()
    log.info("read params.yaml: score=%s threshold=%s", params["score"], params["threshold"])
    model = load_model(MODEL, resolve_device(params["train"]["device"]))
    scaling = read_arrays(SCALING)
    detector = Detector.from_pipeline(
        params, model, read_arrays(FEATURES, "train")["train"], Scaling(**scaling) if scaling else None,
        read_json(THRESHOLD)["threshold"], read_arrays(TRAIN_SCORES), read_arrays(VAL_SCORES),
    )
    detector.save(DETECTOR)


if __name__ == "__main__":
    run_stage(main)

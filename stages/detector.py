"""detector: what scoring new data needs, in one folder: the trained model, the columns and
reference of the training split, the threshold (``python -m vae_anomaly predict`` reads it).

It packages what the stages before it computed (the train stage's model file as it is, the
score stage's training reference and scores) with the writer ``Detector.save`` uses
(vae_anomaly/detector/folder.py), without loading a model: no torch, scikit-learn or PyOD."""
import logging

from stages.paths import DETECTOR, FEATURES, MODEL, REFERENCE, THRESHOLD, TRAIN_SCORES, VAL_SCORES
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import read_encoding
from vae_anomaly.detector.folder import SECTIONS, checked_params, write_detector_folder
from vae_anomaly.errors import UserError
from vae_anomaly.io import read_arrays, read_bytes, read_json, read_shape
from vae_anomaly.params import load_params
from vae_anomaly.scoring.combination import fit_combination
from vae_anomaly.scoring.registry import names_that

log = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    log.info("read params.yaml: score=%s threshold=%s", params["score"], params["threshold"])
    checked = checked_params({name: params[name] for name in SECTIONS}, params["data"]["val_fraction"])
    score = checked["score"]
    saved = read_arrays(REFERENCE)
    explanation = {k.removeprefix("explanation_"): v for k, v in saved.items() if k.startswith("explanation_")}
    reference = {k: v for k, v in saved.items() if not k.startswith("explanation_")} or None
    wanted = [name for name in score["names"] if name in names_that("reference")]
    if wanted and not reference:
        raise UserError(f"{REFERENCE} holds no training reference, but score.names includes {wanted[0]}; "
                        "re-run the score stage (`dvc repro score`)")
    combined_scales = None
    if "combined" in score["names"]:
        combined_scales = fit_combination(read_arrays(VAL_SCORES), score["combine"])
    write_detector_folder(
        DETECTOR, read_bytes(MODEL), params=checked, input_shape=read_shape(FEATURES, "train")[1:],
        val_fraction=params["data"]["val_fraction"], contamination=None, threshold=read_json(THRESHOLD)["threshold"],
        decision_scores=read_arrays(TRAIN_SCORES, score["primary"])[score["primary"]],
        encoding=read_encoding(FEATURES), reference=reference if wanted else None, explanation=explanation or None,
        combined_scales=combined_scales,
    )


if __name__ == "__main__":
    run_stage(main)

"""evaluate: detection metrics on the test split; the only stage that reads test labels.
The primary score's headline goes to reports/metrics.json (what `dvc exp show` and `dvc
metrics diff` compare); the rest of it (precision, recall, balanced accuracy, counts), every
score's, every baseline's and the model's diagnostics to reports/detail.json, the primary
score's per anomaly kind to reports/per_type.json (`dvc metrics show FILE`). The ROC and PR
curves too: the primary score's for `dvc plots`, every score's and baseline's for the plot
stage's figure (computed here, where scikit-learn is loaded already, so that the plot stage
draws without it). For images with defect masks, the anomaly maps' pixel ROC-AUC and AUPRO
(reports/detail.json: pixel)."""
import logging

import numpy as np

from stages.paths import (
    BASELINE_EXPLANATION,
    BASELINE_FAILED,
    BASELINE_SCORES,
    CURVES,
    CURVES_DIR,
    DETAIL,
    LABELS,
    METRICS,
    PER_TYPE,
    TEST_EXPLANATION,
    TEST_LATENT,
    TEST_MAPS,
    TEST_RECONSTRUCTION,
    TEST_SCORES,
    THRESHOLD,
)
from vae_anomaly.cli import run_stage
from vae_anomaly.evaluation.metrics import (
    CURVE_COLUMNS,
    curve_arrays,
    evaluate,
    explanation_metrics,
    latent_metrics,
    per_type_metrics,
    ranking_metrics,
    reconstruction_metrics,
)
from vae_anomaly.evaluation.pixel import pixel_metrics
from vae_anomaly.io import read_arrays, read_json, write_arrays, write_csv, write_json
from vae_anomaly.params import load_params
from vae_anomaly.scoring.thresholds import flag

log = logging.getLogger(__name__)


def pixel_detail(maps: np.ndarray, labels: dict[str, np.ndarray]) -> dict:
    """Pixel ROC-AUC and AUPRO of the anomaly maps over every test image whose mask is known,
    and per anomaly kind (its images with the normal ones)."""
    masks, known, kinds = labels["test_mask"], labels["mask_known"], labels["test_kind"]
    by_kind = {kind: pixel_metrics(maps, masks, known & np.isin(kinds, ["normal", kind]))
               for kind in sorted(set(kinds.tolist()) - {"normal"})}
    return {**pixel_metrics(maps, masks, known), "by_kind": by_kind}


def main() -> None:
    params = load_params()
    primary = params["score"]["primary"]
    log.info("read params.yaml: score.primary=%s", primary)
    scores = read_arrays(TEST_SCORES)
    baseline_scores = read_arrays(BASELINE_SCORES)
    labels = read_arrays(LABELS)
    threshold = read_json(THRESHOLD)["threshold"]
    result, at_threshold = evaluate(labels["test_label"], scores, primary, threshold)
    log.info("%s: ROC-AUC %s, PR-AUC %s, F1 %.4f at threshold %.6g",
             primary, result["roc_auc"], result["pr_auc"], result["f1"], threshold)
    failed = read_json(BASELINE_FAILED)  # baselines that raised: no scores, an error
    detail = {
        "primary": at_threshold,
        "scores": {name: ranking_metrics(labels["test_label"], s) for name, s in scores.items()},
        "baselines": {
            **{name: ranking_metrics(labels["test_label"], s) for name, s in baseline_scores.items()},
            **{name: {"error": error} for name, error in failed.items()},
        },
    }
    for group in ("scores", "baselines"):
        for name, m in detail[group].items():
            log.info("%s %s: %s", group, name,
                     "failed" if "error" in m else f"ROC-AUC {m['roc_auc']}, PR-AUC {m['pr_auc']}")
    detail["reconstruction"] = reconstruction_metrics(read_arrays(TEST_RECONSTRUCTION), labels["test_label"])
    detail["latent"] = latent_metrics(read_arrays(TEST_LATENT), labels["test_label"])
    if "test_changed" in labels:  # the data knows which columns each anomaly changed
        explanations = {**read_arrays(TEST_EXPLANATION), **read_arrays(BASELINE_EXPLANATION)}
        detail["explanation"] = explanation_metrics(explanations, labels["test_changed"], labels["test_kind"],
                                                    flag(scores[primary], threshold))
        log.info("explanations, hit rate on the flagged anomalies: %s",
                 {kind: m["hit_rate"] for kind, m in detail["explanation"].items()})
    if "test_mask" in labels and (labels["mask_known"] & (labels["test_label"] == 1)).any():
        # images with defect masks: whether the maps point at the defects, pixel by pixel
        detail["pixel"] = pixel_detail(read_arrays(TEST_MAPS)["maps"], labels)
        log.info("anomaly maps: pixel ROC-AUC %s, AUPRO %s", detail["pixel"]["roc_auc"], detail["pixel"]["aupro"])
    log.info("normal test samples: reconstruction %s; latent %s", detail["reconstruction"], detail["latent"])
    write_json(METRICS, result)
    write_json(DETAIL, detail)
    write_json(PER_TYPE, per_type_metrics(labels["test_label"], labels["test_kind"], scores[primary], threshold))
    curves = {}
    if len(np.unique(labels["test_label"])) == 2:
        curves = curve_arrays(labels["test_label"], {"scores": scores, "baselines": baseline_scores}, detail)
    else:
        log.info("the test set holds one class only: ROC and PR curves are left empty")
    for name, columns in CURVE_COLUMNS.items():  # the primary score's, from the curves computed once
        write_csv(f"{CURVES_DIR}/{name}.csv",
                  {column: curves.get(f"scores/{primary}/{column}", []) for column in columns})
    write_arrays(CURVES, **curves)
    summary = (f"{primary}: ROC-AUC {result['roc_auc']}, F1 {result['f1']:.4f}; "
               f"{len(detail['baselines']) - len(failed)} baselines scored")
    if failed:
        log.warning("%s; FAILED: %s (see reports/baselines.json)", summary,
                    "; ".join(f"{name} ({error})" for name, error in failed.items()))
    else:
        log.info("%s", summary)


if __name__ == "__main__":
    run_stage(main)

"""threshold: choose the decision threshold from unlabelled scores of one split."""
import logging

from stages.paths import SCORES_DIR, THRESHOLD
from vae_anomaly.cli import run_stage
from vae_anomaly.io import read_arrays, require_finite, write_json
from vae_anomaly.params import load_params
from vae_anomaly.scoring.thresholds import choose_threshold

log = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    th, primary = params["threshold"], params["score"]["primary"]
    log.info("read params.yaml: threshold=%s score.primary=%s", th, primary)
    scores = read_arrays(f"{SCORES_DIR}/{th['split']}.npz")[primary]
    require_finite(scores, f"score {primary} (score.primary) of the {th['split']} split",
                   "re-run `dvc repro -f score`, whose check stops on such scores and says why")
    value = choose_threshold(scores, th["method"], th["k"], th["q"])
    require_finite(value, f"the {th['method']} threshold of the {th['split']} scores",
                   "the scores are too large for their mean and std; use threshold.method = percentile")
    log.info("threshold on %s (%s over %d %s scores) = %.6g", primary, th["method"], len(scores), th["split"], value)
    write_json(THRESHOLD, {"threshold": value, "n_fit": len(scores)})


if __name__ == "__main__":
    run_stage(main)

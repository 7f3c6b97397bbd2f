"""Where each stage's inputs and outputs lie, relative to the project root: the paths of
dvc.yaml's deps and outs, declared once (tests/test_pipeline.py holds the two together)."""

# prepare
FEATURES = "data/prepared/features.npz"  # train, val, test; columns: a table's encoding (data/columns.py)
LABELS = "data/prepared/labels.npz"  # only evaluate and plot read it
DATA_SUMMARY = "reports/data_summary.json"
EXAMPLES = "reports/figures_data/examples.png"
# baselines
BASELINE_SCORES = "data/baseline_scores/test.npz"
BASELINE_RECORD = "reports/baselines.json"
# The errors of the baselines that failed, by name, for evaluate: inside data/baseline_scores,
# so that evaluate's dependencies stay one column each in `dvc exp show`.
BASELINE_FAILED = "data/baseline_scores/failed.json"
BASELINE_EXPLANATION = "data/baseline_scores/test_explanation.npz"  # tables: ECOD's tail score per column
# train
MODEL = "data/model.pt"
TRAINING_LOG = "reports/train"  # DVCLive's: metrics.json (the latest epoch), plots/metrics/*.tsv
TRAIN_METRICS = "reports/train_metrics.json"
# score
SCORES_DIR = "data/scores"
TRAIN_SCORES = f"{SCORES_DIR}/train.npz"
VAL_SCORES = f"{SCORES_DIR}/val.npz"
TEST_SCORES = f"{SCORES_DIR}/test.npz"
TEST_LATENT = f"{SCORES_DIR}/test_latent.npz"
TEST_RECONSTRUCTION = f"{SCORES_DIR}/test_reconstruction.npz"
REFERENCE = f"{SCORES_DIR}/reference.npz"
TEST_EXPLANATION = f"{SCORES_DIR}/test_explanation.npz"  # tables: each column's contribution, ours and a baseline
TEST_MAPS = f"{SCORES_DIR}/test_maps.npz"  # images: each test image's anomaly map (scoring/maps.py)
# threshold
THRESHOLD = "reports/threshold.json"
# detector
DETECTOR = "data/detector"
# evaluate
METRICS = "reports/metrics.json"
DETAIL = "reports/detail.json"  # not DVC metrics: `dvc exp show` stays narrow
PER_TYPE = "reports/per_type.json"
CURVES_DIR = "reports/curves"  # the primary score's roc.csv and pr.csv: dvc.yaml's plots
CURVES = "data/curves.npz"  # every score's and baseline's, "<group>/<name>/<column>" (metrics.curve_arrays)
# plot
FIGURES_DIR = "reports/figures"

"""prepare: build the dataset's splits; test labels go to a file only evaluation reads; the
columns a table was encoded with (kinds, scaling, categories) go with them."""
import logging

from stages.paths import DATA_SUMMARY, EXAMPLES, FEATURES, LABELS
from vae_anomaly.cli import run_stage
from vae_anomaly.data.columns import encoding_member
from vae_anomaly.data.figures import examples_figure
from vae_anomaly.data.sources import IMAGE_SOURCES, make_splits
from vae_anomaly.io import save_figure, write_arrays, write_json
from vae_anomaly.params import load_params

log = logging.getLogger(__name__)


def main() -> None:
    params = load_params()
    data = params["data"]
    log.info("read params.yaml: data.source=%s", data["source"])
    if data["source"] in IMAGE_SOURCES:
        log.info("data.protocol=%s%s", data["protocol"],
                 "" if data["protocol"] == "plain" else f", data.classes={data['classes']}")
    splits = make_splits(data)
    # With the splits, the columns of tables (kinds, scaling, categories): for the train
    # stage's likelihoods, the baselines' encoders and the detector's new rows.
    write_arrays(FEATURES, train=splits.train, val=splits.val, test=splits.test,
                 **encoding_member(splits.encoding))
    write_arrays(LABELS, **splits.labels())
    write_json(DATA_SUMMARY, splits.summary())
    save_figure(examples_figure(splits), EXAMPLES, crop=True)


if __name__ == "__main__":
    run_stage(main)

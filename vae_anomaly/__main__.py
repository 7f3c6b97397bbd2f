"""The command line: ``python -m vae_anomaly predict --detector data/detector --input new.csv
--output scores.csv`` scores new data with a saved detector (docs/detector.md)."""
from __future__ import annotations

import argparse

from .cli import run_main


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m vae_anomaly", description=__doc__.split("``")[0].strip())
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = commands.add_parser(
        "predict", help="score new data with a saved detector",
        description="Score every row (or image) of --input and write one row per input to --output: every "
                    "score of the detector, and 'anomaly' (1 where the primary score lies above the threshold).",
    )
    predict.add_argument("--detector", required=True, metavar="DIR",
                         help="a saved detector: data/detector (from `dvc repro`) or a folder of Detector.save")
    predict.add_argument("--input", required=True, metavar="FILE",
                         help=".csv or .parquet: a header row and the columns the detector was fitted on, by name "
                              "(any order; numbers, text, booleans, empty cells); .npz: the array X (rows of numbers, "
                              "or images N x C x H x W in [0, 1]); images: a folder of image files, one image file, "
                              "or a quoted glob ('D/test/*/*.png')")
    predict.add_argument("--output", required=True, metavar="FILE", help=".csv, .parquet or .npz")
    predict.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                         help="rows read and scored at once, which bounds memory (default 65536)")
    predict.add_argument("--device", choices=("cpu", "cuda"), default=None,
                         help="where to score (default: the detector's train.device)")
    predict.add_argument("--explain", type=int, default=0, metavar="K",
                         help="tables: add the K columns that contribute most to each row's score, and their "
                              "contributions in nats (top1_column, top1_contribution, ...; docs/detector.md)")
    predict.add_argument("--maps", default=None, metavar="DIR",
                         help="images: write each image's anomaly map into DIR, as a PNG heat map and the raw "
                              "float32 array (.npy) beside it (docs/detector.md)")
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    from .detector.predict import (  # imports torch: after --help and usage errors
        CHUNK_ROWS,
        predict_file,
    )

    run_main(lambda: predict_file(args.detector, args.input, args.output,
                                   args.chunk_rows or CHUNK_ROWS, args.device, args.explain, args.maps))


if __name__ == "__main__":
    main()

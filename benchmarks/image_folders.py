"""The defect benchmark: the pipeline's default image detector on MVTec-layout folders written
from the local MNIST / Fashion-MNIST files (benchmarks/defects.py), MLP against conv,
greyscale and colour, image ROC-AUC beside PyOD's baselines, pixel ROC-AUC and AUPRO of the
anomaly maps, and what the maps cost against the scores (docs/images.md).

    python -m benchmarks.image_folders --data-root ../shared/datasets

Each run (folder, architecture, seed) trains as `dvc exp run -S data.source=folder` would,
with params.yaml's defaults, and is cached as JSON under ``--out``/runs: a run cut short goes
on where it stopped. Defect types in DEV_KINDS chose what was chosen (the architecture that
``model.architecture: auto`` resolves to); the others are reported.
"""
from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vae_anomaly.cli import run_main

log = logging.getLogger("benchmarks.image_folders")

# (dataset, normal class, colour): the folders written by benchmarks/defects.py
FOLDERS = (("mnist", 0, False), ("mnist", 0, True), ("fashion_mnist", 0, False), ("fashion_mnist", 0, True))
ARCHITECTURES = ("mlp", "conv")
SIZE = [28, 28]  # the source images' own size
DEV_KINDS = ("scratch",)  # defect types that chose; the rest are reported
BASELINES = ["iforest", "ecod", "knn", "autoencoder", "vae"]


def folder_name(dataset: str, normal: int, colour: bool) -> str:
    return f"{dataset}_{normal}_{'colour' if colour else 'grey'}"


def ensure_folder(data_root: str, defects_root: Path, dataset: str, normal: int, colour: bool) -> Path:
    """The MVTec-layout folder of (dataset, normal, colour), written by benchmarks/defects.py
    when it is not there yet."""
    path = defects_root / folder_name(dataset, normal, colour)
    if not (path / "train" / "good").is_dir():
        command = [sys.executable, "-m", "benchmarks.defects", "--data-root", data_root, "--dataset", dataset,
                   "--normal-class", str(normal), "--out", str(defects_root), *(["--colour"] if colour else [])]
        log.info("writing %s: %s", path, " ".join(command))
        subprocess.run(command, check=True)
    return path


def run_params(folder: Path, architecture: str, seed: int) -> dict[str, Any]:
    from vae_anomaly.params import default_params, resolve_auto, validate

    params = default_params()
    params["data"].update(source="folder")
    params["data"]["folder"].update(path=str(folder), size=list(SIZE))
    params["model"]["architecture"] = architecture
    params["train"].update(seed=seed, device="cpu")
    params["baselines"]["names"] = list(BASELINES)
    return resolve_auto(validate(params))


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else None


def by_kind(kinds: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Image ROC-AUC of each anomaly kind against the normal images, and of the reported kinds
    together ("report") and the development kinds ("dev")."""
    out = {kind: auc(labels[np.isin(kinds, ["normal", kind])], scores[np.isin(kinds, ["normal", kind])])
           for kind in sorted(set(kinds.tolist()) - {"normal"})}
    for group, chosen in (("dev", lambda k: k in DEV_KINDS), ("report", lambda k: k not in DEV_KINDS)):
        keep = np.array([k == "normal" or chosen(k) for k in kinds])
        out[group] = auc(labels[keep], scores[keep])
    return out


def one_run(folder: Path, architecture: str, seed: int, with_baselines: bool) -> dict[str, Any]:
    """Train, score, map and (``with_baselines``) fit the baselines on one folder; every number
    the report needs, and the seconds each part took."""
    import torch

    from vae_anomaly.data.sources import make_splits
    from vae_anomaly.evaluation.baselines import baseline_scores
    from vae_anomaly.evaluation.pixel import pixel_metrics
    from vae_anomaly.pipeline import score_splits, train_model, training_reference
    from vae_anomaly.scoring.maps import anomaly_maps
    from vae_anomaly.scoring.scores import compute_scores

    params = run_params(folder, architecture, seed)
    splits = make_splits(params["data"])
    features = {"train": splits.train, "val": splits.val, "test": splits.test}
    score_p = params["score"]
    device = torch.device("cpu")
    start = time.perf_counter()
    model, _, summary = train_model(splits.train, splits.val, params, device)
    fit_s = time.perf_counter() - start
    reference = training_reference(model, splits.train, score_p)
    scores = score_splits(model, features, score_p, seed, splits=("val", "test"), reference=reference)["test"]
    # The timings compare the two on the same test images: every score (combined's scales
    # fitted already), then the maps.
    from vae_anomaly.scoring.combination import fit_combination

    parts = {**score_p, "names": [n for n in score_p["names"] if n != "combined"]}
    scales = fit_combination(compute_scores(model, splits.val, parts, seed, reference=reference, progress=False),
                             score_p["combine"])
    start = time.perf_counter()
    compute_scores(model, splits.test, score_p, seed, reference=reference, scales=scales, progress=False)
    score_s = time.perf_counter() - start
    start = time.perf_counter()
    maps = anomaly_maps(model, splits.test, score_p["batch_size"], progress=False)
    maps_s = time.perf_counter() - start
    kinds, labels = splits.test_kind, splits.test_label
    result = {
        "folder": folder.name, "architecture": architecture, "seed": seed, "primary": score_p["primary"], "n_train": len(splits.train),
        "n_test": len(splits.test), "epochs_run": summary["epochs_run"], "n_parameters": summary["n_parameters"],
        "fit_s": fit_s, "score_s": score_s, "maps_s": maps_s,
        "image": {name: by_kind(kinds, labels, s) for name, s in scores.items()},
        "pixel": {},
    }
    known = splits.mask_known
    for kind in sorted(set(kinds.tolist()) - {"normal"}):
        result["pixel"][kind] = pixel_metrics(maps, splits.test_mask, known & np.isin(kinds, ["normal", kind]))
    for group, chosen in (("dev", lambda k: k in DEV_KINDS), ("report", lambda k: k not in DEV_KINDS)):
        keep = np.array([k == "normal" or chosen(k) for k in kinds])
        result["pixel"][group] = pixel_metrics(maps, splits.test_mask, known & keep)
    if with_baselines:
        start = time.perf_counter()
        base, record, _ = baseline_scores(features, params, "cpu", 1)
        result["baselines_s"] = time.perf_counter() - start
        result["baselines"] = {name: by_kind(kinds, labels, s) for name, s in base.items()}
        result["baselines_failed"] = record["failed"]
    return result


def mean_std(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def report(runs: list[dict[str, Any]], primary: str) -> str:
    """Markdown: per folder and architecture, the seed means ± std of the image ROC-AUC of
    ``primary`` and the pixel metrics (reported kinds, then development kinds), the cost of the
    maps against the scores; then the baselines' image ROC-AUC on the reported kinds."""
    lines = [(f"Image ROC-AUC of `{primary}`, pixel ROC-AUC and AUPRO (FPR ≤ 0.3) of the anomaly maps; mean ± std "
              f"over seeds; *report*: every defect type but {', '.join(DEV_KINDS)} (*dev*), which chose."), "",
             ("| folder | model | seeds | image ROC-AUC | pixel ROC-AUC | AUPRO | dev: image / pixel / AUPRO | "
              "maps / scores time |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["folder"], run["architecture"]), []).append(run)
    for (folder, arch), rs in groups.items():
        ratio = np.median([r["maps_s"] / r["score_s"] for r in rs])
        dev = " / ".join(mean_std([r[part][key]["dev"] if part == "image" else r["pixel"]["dev"][key]
                                   for r in rs]) for part, key in (("image", primary), ("pixel", "roc_auc"),
                                                                   ("pixel", "aupro")))
        lines.append(f"| {folder} | {arch} | {len(rs)} | {mean_std([r['image'][primary]['report'] for r in rs])} | "
                     f"{mean_std([r['pixel']['report']['roc_auc'] for r in rs])} | "
                     f"{mean_std([r['pixel']['report']['aupro'] for r in rs])} | {dev} | {ratio:.2f}× |")
    lines += ["", "Per defect type (seed means), image ROC-AUC / pixel ROC-AUC / AUPRO:", "",
              "| folder | model | " + " | ".join(sorted({k for r in runs for k in r["pixel"]} - {"dev", "report"}))
              + " |"]
    kinds = sorted({k for r in runs for k in r["pixel"]} - {"dev", "report"})
    lines.append("| --- | --- |" + " --- |" * len(kinds))
    for (folder, arch), rs in groups.items():
        cells = []
        for kind in kinds:
            image = [r["image"][primary].get(kind) for r in rs if kind in r["pixel"]]
            pix = [r["pixel"][kind]["roc_auc"] for r in rs if kind in r["pixel"]]
            pro = [r["pixel"][kind]["aupro"] for r in rs if kind in r["pixel"]]
            cells.append(" / ".join(f"{np.mean(v):.3f}" if v else "-" for v in (image, pix, pro)))
        lines.append(f"| {folder} | {arch} | " + " | ".join(cells) + " |")
    with_base = [r for r in runs if "baselines" in r]
    if with_base:
        names = sorted({n for r in with_base for n in r["baselines"]})
        lines += ["", ("PyOD's detectors on the same training images (flattened), image ROC-AUC on the reported "
                       "kinds, mean ± std over seeds:"), "", "| folder | " + " | ".join(names) + " |",
                  "| --- |" + " --- |" * len(names)]
        folders = sorted({r["folder"] for r in with_base})
        for folder in folders:
            rs = [r for r in with_base if r["folder"] == folder]
            lines.append(f"| {folder} | " + " | ".join(
                mean_std([r["baselines"][n]["report"] for r in rs if n in r["baselines"]]) for n in names) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.image_folders", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="a torchvision root holding MNIST/raw and FashionMNIST/raw")
    parser.add_argument("--defects-root", default="data/defects", help="where the folders are (written if missing)")
    parser.add_argument("--out", default="reports/image_folders", help="runs/*.json and image_folders.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--folders", nargs="+", default=None, help="folder names (default: all of FOLDERS)")
    parser.add_argument("--cached-only", action="store_true", help="report the runs already cached; run none")
    args = parser.parse_args(argv)

    def work() -> None:
        out = Path(args.out)
        (out / "runs").mkdir(parents=True, exist_ok=True)
        specs = [f for f in FOLDERS if args.folders is None or folder_name(*f) in args.folders]
        runs = []
        folders = [ensure_folder(args.data_root, Path(args.defects_root), *spec) for spec in specs]
        for arch in args.architectures:  # every folder's MLP first: a run cut short has them all
            for folder in folders:
                for seed in args.seeds:
                    path = out / "runs" / f"{folder.name}_{arch}_{seed}.json"
                    if path.is_file():
                        runs.append(json.loads(path.read_text()))
                        continue
                    if args.cached_only:
                        continue
                    log.info("run %s, %s, seed %d", folder.name, arch, seed)
                    run = one_run(folder, arch, seed, with_baselines=arch == args.architectures[0])
                    path.write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
                    runs.append(run)
                    log.info("%s %s seed %d: image ROC-AUC %s, pixel %s", folder.name, arch, seed,
                             run["image"][run["primary"]]["report"], run["pixel"]["report"])
        text = report(runs, runs[0]["primary"])
        (out / "image_folders.md").write_text(text)
        print(text)

    run_main(work)


if __name__ == "__main__":
    main()

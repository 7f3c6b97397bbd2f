"""Images as users have them: every stage run, in order, on small generated folders in MVTec
AD's layout (greyscale with defect masks, colour without), the anomaly maps they write and
score, and `predict` on a folder with --maps."""
import importlib
import json

import numpy as np
import pytest
import yaml
from conftest import ROOT
from PIL import Image

from vae_anomaly.__main__ import main as cli_main
from vae_anomaly.detector.detector import Detector
from vae_anomaly.scoring.maps import anomaly_maps

STAGES = ("prepare", "baselines", "train", "score", "threshold", "detector", "evaluate", "plot")
SIDE = 16


def normal_image(rng: np.random.Generator, colour: bool) -> np.ndarray:
    """A soft ring at a jittered place: (SIDE, SIDE) or (SIDE, SIDE, 3) in [0, 1]."""
    yy, xx = np.mgrid[:SIDE, :SIDE]
    cy, cx = SIDE / 2 + rng.normal(0, 0.7, 2)
    radius = np.hypot(yy - cy, xx - cx)
    image = np.exp(-((radius - 4.5) ** 2) / 2.0)
    return np.stack([image, 0.6 * image, 0.2 * image], axis=-1) if colour else image


def defect(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bright 4x4 square at a random place, and its mask."""
    y, x = rng.integers(1, SIDE - 5, 2)
    mask = np.zeros((SIDE, SIDE), bool)
    mask[y:y + 4, x:x + 4] = True
    out = image.copy()
    out[mask] = 1.0
    return out, mask


def save(path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)


def write_folder(root, colour: bool = False, masks: bool = True, n_train: int = 80, n_test: int = 12) -> None:
    rng = np.random.default_rng(0)
    suffix = ".jpg" if colour else ".png"
    for i in range(n_train):
        save(root / f"train/good/{i:03d}{suffix}", normal_image(rng, colour))
    for i in range(n_test):
        save(root / f"test/good/{i:03d}{suffix}", normal_image(rng, colour))
        image, mask = defect(normal_image(rng, colour), rng)
        save(root / f"test/square/{i:03d}{suffix}", image)
        if masks:
            save(root / f"ground_truth/square/{i:03d}_mask.png", mask.astype(float))


def run_stages(project, monkeypatch, **overrides) -> dict:
    """Every stage's main() in order in ``project`` (holding the folder D), with the default
    params but data.source: folder, small images and a short budget."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(source="folder")
    params["data"]["folder"].update(path="D", size=[SIDE, SIDE])
    params["train"].update(epochs=4, kl_warmup_epochs=1, device="cpu")
    params["baselines"]["names"] = ["knn", "iforest"]
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        if "." in name:
            sub, name = name.split(".")
            params[section][sub][name] = value
        else:
            params[section][name] = value
    monkeypatch.chdir(project)
    monkeypatch.setenv("CI", "1")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(importlib.import_module("stages.baselines"), "JOBS", 1)
    for stage in STAGES:
        importlib.import_module(f"stages.{stage}").main()
    return {name: json.loads((project / "reports" / f"{name}.json").read_text())
            for name in ("data_summary", "metrics", "detail", "per_type")}


def test_a_greyscale_folder_with_masks_runs_every_stage_and_scores_its_maps(tmp_path, monkeypatch):
    write_folder(tmp_path / "D")
    reports = run_stages(tmp_path, monkeypatch)
    assert reports["data_summary"]["test"]["by_kind"] == {"normal": 12, "square": 12}
    assert reports["data_summary"]["n_features"] == SIDE * SIDE
    assert 0 <= reports["metrics"]["roc_auc"] <= 1
    pixel = reports["detail"]["pixel"]
    assert pixel["n_images"] == 24 and pixel["n_regions"] == 12
    assert 0.5 < pixel["roc_auc"] <= 1 and 0 < pixel["aupro"] <= 1  # a bright square is where the residual is
    assert set(pixel["by_kind"]) == {"square"}
    maps = np.load(tmp_path / "data/scores/test_maps.npz")["maps"]
    assert maps.shape == (24, SIDE, SIDE) and maps.dtype == np.float32
    assert (tmp_path / "reports/figures/anomaly_maps.png").read_bytes()[:4] == b"\x89PNG"


def test_a_colour_folder_without_masks_runs_every_stage_without_pixel_metrics(tmp_path, monkeypatch):
    write_folder(tmp_path / "D", colour=True, masks=False)
    reports = run_stages(tmp_path, monkeypatch, **{"model.architecture": "conv"})
    assert "pixel" not in reports["detail"]
    features = np.load(tmp_path / "data/prepared/features.npz")
    assert features["train"].shape[1:] == (3, SIDE, SIDE)
    assert (tmp_path / "reports/figures/anomaly_maps.png").is_file()


def test_maps_average_to_the_image_score_and_explain_returns_them(tmp_path):
    rng = np.random.default_rng(0)
    x = np.stack([normal_image(rng, False) for _ in range(60)])[:, None].astype(np.float32)
    detector = Detector(train={"epochs": 2, "kl_warmup_epochs": 1, "device": "cpu"}).fit(x)
    maps = detector.explain(x[:5])
    assert maps.shape == (5, SIDE, SIDE) and (maps >= 0).all()
    import torch

    # The map sums to the reconstruction term of the negative ELBO at the posterior mean.
    model = detector.model_
    with torch.no_grad():
        xt = torch.as_tensor(x[:5])
        nll = model.nll(xt, model.decode(model.encode(xt)[0])).numpy()
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), nll, rtol=1e-4)
    # in batches of 2: the same maps, up to the last bits of the batch's matrix products
    np.testing.assert_allclose(anomaly_maps(detector.model_, x[:5], 2, progress=False), maps, rtol=1e-5)
    detector.save(tmp_path / "det")
    loaded = Detector.load(tmp_path / "det")
    assert loaded.map_scale_ == pytest.approx(detector.map_scale_)
    np.testing.assert_array_equal(loaded.explain(x[:5]), maps)


def test_predict_on_a_folder_writes_one_row_and_one_map_per_image(tmp_path, monkeypatch):
    write_folder(tmp_path / "D")
    run_stages(tmp_path, monkeypatch)
    cli_main(["predict", "--detector", "data/detector", "--input", "D/test/square", "--output", "out.csv",
              "--maps", "maps"])
    import pandas as pd

    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out["file"]) == [f"D/test/square/{i:03d}.png" for i in range(12)]
    assert {"negative_elbo", "combined", "anomaly"} <= set(out.columns)
    for i in range(12):
        assert (tmp_path / f"maps/{i:03d}.png").read_bytes()[:4] == b"\x89PNG"
        assert np.load(tmp_path / f"maps/{i:03d}.npy").shape == (SIDE, SIDE)
    # A glob across defect folders: the maps keep the folders below the glob's fixed part.
    cli_main(["predict", "--detector", "data/detector", "--input", "D/test/*/*.png", "--output", "all.csv",
              "--maps", "all_maps"])
    assert len(pd.read_csv(tmp_path / "all.csv")) == 24
    assert (tmp_path / "all_maps/good/000.npy").is_file() and (tmp_path / "all_maps/square/011.png").is_file()
    # The maps are those of the test split the score stage wrote, as the detector scores the same images.
    stage_maps = np.load(tmp_path / "data/scores/test_maps.npz")["maps"]
    np.testing.assert_allclose(np.load(tmp_path / "all_maps/square/000.npy"), stage_maps[12], rtol=1e-5, atol=1e-7)


def test_predict_on_an_unreadable_image_names_it_and_writes_nothing(tmp_path, monkeypatch, caplog):
    write_folder(tmp_path / "D")
    run_stages(tmp_path, monkeypatch)
    (tmp_path / "D/test/square/005.png").write_bytes(b"not an image")
    with pytest.raises(SystemExit) as stop:
        cli_main(["predict", "--detector", "data/detector", "--input", "D/test/square", "--output", "out.csv",
                  "--maps", "maps"])
    assert stop.value.code == 2
    assert "D/test/square/005.png" in caplog.text
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "maps").exists()

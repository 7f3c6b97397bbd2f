"""MVTec-layout defect folders from the local MNIST / Fashion-MNIST files, since MVTec AD itself
cannot be downloaded here: one class normal, synthetic local defects with their masks, in
greyscale or colour (docs/images.md, "The defect benchmark").

    python -m benchmarks.defects --data-root ../shared/datasets --dataset mnist --normal-class 0 [--colour]

writes ``OUT/<dataset>_<class>_<grey|colour>/``: ``train/good`` (normal training images),
``test/good`` (other normal images), ``test/<defect>`` (normal test images with one defect
each) and ``ground_truth/<defect>/<stem>_mask.png`` (255 = defect). The defects are those
anomalib and DRAEM synthesise, sized for 28x28 images:

- ``patch``: a rectangle cut from an image of another class, pasted elsewhere (CutPaste);
- ``scratch``: one or two thin bright lines across part of the image;
- ``blob``: a filled ellipse of a random intensity;
- ``perlin``: a region of thresholded Perlin noise in which a noise texture is blended in
  (DRAEM's anomaly source, Zavrtanik et al. 2021);
- ``colour`` (colour folders only): a region of the stroke recoloured to a hue far from the
  normal ones, at the same brightness: seen only in colour.

A mask is the defect's region where the defect changed the image by at least MIN_CHANGE, so
that it marks what there is to see. Everything is drawn from one seeded generator: the same
arguments write the same bytes.
"""
from __future__ import annotations

import argparse
import colorsys
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vae_anomaly.cli import run_main
from vae_anomaly.errors import UserError

log = logging.getLogger("benchmarks.defects")

DEFECTS = ("patch", "scratch", "blob", "perlin")
COLOUR_DEFECTS = (*DEFECTS, "colour")
MIN_CHANGE = 0.05  # a pixel in the mask changed by at least this much (max over channels)
MIN_PIXELS = 4  # a defect changing fewer pixels is drawn again
TRIES = 50
# The colour variant: strokes in hues within NORMAL_HUE +- HUE_SPREAD, on a dark grey ground.
NORMAL_HUE, HUE_SPREAD, BACKGROUND = 0.08, 0.04, 0.1


def perlin(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin noise in about [-1, 1] on a ``cells`` x ``cells`` lattice of random gradients,
    the generator of DRAEM's masks (hand-written: thirty lines, where a package would be a
    dependency for one benchmark)."""
    height, width = shape
    angles = rng.uniform(0, 2 * np.pi, (cells + 1, cells + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y, x = np.meshgrid(np.linspace(0, cells, height, endpoint=False), np.linspace(0, cells, width, endpoint=False),
                       indexing="ij")
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = y - y0, x - x0

    def dot(dy: int, dx: int) -> np.ndarray:
        g = gradients[y0 + dy, x0 + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    top = dot(0, 0) + fade(fx) * (dot(0, 1) - dot(0, 0))
    bottom = dot(1, 0) + fade(fx) * (dot(1, 1) - dot(1, 0))
    return np.sqrt(2) * (top + fade(fy) * (bottom - top))


def hue_colour(hue: float, value: float = 1.0) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.85, value), dtype=np.float32)


def paint(grey: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(H, W) intensities -> (3, H, W): ``colour`` where bright, the dark ground elsewhere."""
    return (BACKGROUND * (1 - grey))[None] + grey[None] * colour[:, None, None]


def colourise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 1, H, W) -> (N, 3, H, W): each image's strokes in a hue near NORMAL_HUE."""
    hues = rng.uniform(NORMAL_HUE - HUE_SPREAD, NORMAL_HUE + HUE_SPREAD, len(images))
    return np.stack([paint(image[0], hue_colour(h)) for image, h in zip(images, hues)]).astype(np.float32)


def _window(shape: tuple[int, int], rng: np.random.Generator, low: int, high: int) -> tuple[slice, slice, int, int]:
    h, w = rng.integers(low, high + 1, 2)
    y, x = rng.integers(0, shape[0] - h + 1), rng.integers(0, shape[1] - w + 1)
    return slice(y, y + h), slice(x, x + w), h, w


def _ellipse(shape: tuple[int, int], rng: np.random.Generator, low: float, high: float,
             centre: tuple[float, float] | None = None) -> np.ndarray:
    from skimage.draw import ellipse

    region = np.zeros(shape, dtype=bool)
    cy, cx = centre if centre is not None else (rng.uniform(3, shape[0] - 3), rng.uniform(3, shape[1] - 3))
    rr, cc = ellipse(cy, cx, rng.uniform(low, high), rng.uniform(low, high), shape=shape,
                     rotation=rng.uniform(0, np.pi))
    region[rr, cc] = True
    return region


def _draw(image: np.ndarray, kind: str, rng: np.random.Generator, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One attempt at a defect of ``kind``: the changed image and the defect's region."""
    channels, height, width = image.shape
    shape = (height, width)
    out = image.copy()
    region = np.zeros(shape, dtype=bool)
    if kind == "patch":
        source = others[rng.integers(len(others))]
        ys, xs, h, w = _window(shape, rng, 5, 9)
        sy, sx = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        out[:, ys, xs] = source[:, sy:sy + h, sx:sx + w]
        region[ys, xs] = True
    elif kind == "scratch":
        from skimage.draw import line_aa

        colour = np.ones(channels, np.float32) if channels == 1 else hue_colour(rng.uniform())
        for _ in range(rng.integers(1, 3)):
            length, angle = rng.uniform(7, 14), rng.uniform(0, np.pi)
            y0, x0 = rng.uniform(2, height - 2), rng.uniform(2, width - 2)
            y1 = np.clip(y0 + length * np.sin(angle), 0, height - 1)
            x1 = np.clip(x0 + length * np.cos(angle), 0, width - 1)
            rr, cc, value = line_aa(int(y0), int(x0), int(y1), int(x1))
            strength = rng.uniform(0.8, 1.0) * value
            out[:, rr, cc] = np.maximum(out[:, rr, cc], strength[None] * colour[:, None])
            region[rr, cc] = True
    elif kind == "blob":
        region = _ellipse(shape, rng, 1.5, 3.5)
        value = rng.uniform(0, 1, channels) if channels == 1 else hue_colour(rng.uniform(), rng.uniform(0.3, 1))
        out[:, region] = np.asarray(value, np.float32)[:, None]
    elif kind == "perlin":
        noise = perlin(shape, int(rng.choice([2, 4, 7])), rng)
        ys, xs, _, _ = _window(shape, rng, 7, 12)
        window = np.zeros(shape, dtype=bool)
        window[ys, xs] = True
        region = (noise > 0.2) & window
        texture = (perlin(shape, 7, rng) + 1) / 2
        tint = np.ones(channels, np.float32) if channels == 1 else hue_colour(rng.uniform())
        beta = rng.uniform(0.5, 1.0)
        blended = (1 - beta) * image + beta * texture[None] * tint[:, None, None]
        out = np.where(region[None], blended, image)
    elif kind == "colour":
        if channels != 3:
            raise ValueError("the colour defect needs colour images")
        grey = (image.max(axis=0) - BACKGROUND) / (1 - BACKGROUND)  # the stroke's intensity
        stroke = np.argwhere(grey > 0.3)  # centred on the stroke, so that there is colour to change
        centre = stroke[rng.integers(len(stroke))] if len(stroke) else None
        region = _ellipse(shape, rng, 2.5, 5, centre) & (grey > 0.3)
        far = hue_colour(NORMAL_HUE + rng.uniform(0.35, 0.65))
        out = np.where(region[None], paint(np.clip(grey, 0, 1), far), image)
    else:
        raise ValueError(f"unknown defect {kind!r}")
    return np.clip(out, 0, 1).astype(np.float32), region


def add_defect(image: np.ndarray, kind: str, rng: np.random.Generator, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` float32 (C, H, W) in [0, 1] with one defect of ``kind``, and its mask (bool
    (H, W)): the defect's region where it changed the image by at least MIN_CHANGE. Drawn
    again while it changes fewer than MIN_PIXELS pixels."""
    for _ in range(TRIES):
        out, region = _draw(image, kind, rng, others)
        mask = region & (np.abs(out - image).max(axis=0) >= MIN_CHANGE)
        if mask.sum() >= MIN_PIXELS:
            return out, mask
    raise ValueError(f"a {kind} defect changed fewer than {MIN_PIXELS} pixels in {TRIES} tries")


def _png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)).save(path)


def write_defect_folder(out: str | Path, normal_train: np.ndarray, normal_test: np.ndarray, others: np.ndarray,
                        n_per_defect: int, rng: np.random.Generator, colour: bool, n_good: int,
                        defects: tuple[str, ...] | None = None, force: bool = False) -> dict[str, int]:
    """Write the MVTec-layout folder ``out`` from greyscale images (N, 1, H, W) in [0, 1]: the
    normal training images, ``n_good`` normal test images, and ``n_per_defect`` images of each
    defect, each made from a normal test image of its own; ``colour`` colourises them all
    first. Written beside ``out`` and renamed into place when complete. Returns the counts."""
    out = Path(out)
    defects = defects or (COLOUR_DEFECTS if colour else DEFECTS)
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} exists and is not empty; remove it, or pass --force to write it again")
    needed = n_good + n_per_defect * len(defects)
    if len(normal_test) < needed:
        raise UserError(f"{needed} normal test images are needed ({n_good} good + {n_per_defect} x {len(defects)} "
                        f"defects), but only {len(normal_test)} are there; lower --n-test-good or --n-per-defect")
    if colour:
        normal_train, normal_test, others = (colourise(x, rng) for x in (normal_train, normal_test, others))
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = {}
        for folder, images in (("train/good", normal_train), ("test/good", normal_test[:n_good])):
            (tmp / folder).mkdir(parents=True)
            for i, image in enumerate(images):
                _png(tmp / folder / f"{i:05d}.png", image)
            counts[folder] = len(images)
        for k, kind in enumerate(defects):
            (tmp / "test" / kind).mkdir(parents=True)
            (tmp / "ground_truth" / kind).mkdir(parents=True)
            start = n_good + k * n_per_defect
            for i, image in enumerate(normal_test[start:start + n_per_defect]):
                broken, mask = add_defect(image, kind, rng, others)
                _png(tmp / "test" / kind / f"{i:05d}.png", broken)
                _png(tmp / "ground_truth" / kind / f"{i:05d}_mask.png", mask[None].astype(np.float32))
            counts[f"test/{kind}"] = n_per_defect
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.defects", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="a torchvision root holding MNIST/raw, FashionMNIST/raw")
    parser.add_argument("--dataset", choices=("mnist", "fashion_mnist"), default="mnist")
    parser.add_argument("--normal-class", type=int, default=0)
    parser.add_argument("--colour", action="store_true", help="colourise the images; adds the colour defect")
    parser.add_argument("--n-train", type=int, default=0,
                        help="normal training images, a seeded share of the class's; 0 (default) = all (about 6,000)")
    parser.add_argument("--n-test-good", type=int, default=200, help="normal test images (default 200)")
    parser.add_argument("--n-per-defect", type=int, default=100, help="test images of each defect (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="data/defects", help="the folder the dataset's folder goes into")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)

    def work() -> dict[str, Any]:
        from vae_anomaly.data.images import load_torchvision

        images = load_torchvision(args.dataset, args.data_root, allow_download=False)
        if not 0 <= args.normal_class < len(images.class_names):
            raise UserError(f"--normal-class {args.normal_class}: {args.dataset} has classes 0 to "
                            f"{len(images.class_names) - 1}")
        rng = np.random.default_rng(args.seed)
        train = images.train_images[images.train_labels == args.normal_class]
        test = images.test_images[images.test_labels == args.normal_class]
        others = images.test_images[images.test_labels != args.normal_class]
        train, test = train[rng.permutation(len(train))[:args.n_train or None]], test[rng.permutation(len(test))]
        others = others[rng.permutation(len(others))[:2000]]
        name = f"{args.dataset}_{args.normal_class}_{'colour' if args.colour else 'grey'}"
        out = Path(args.out) / name
        counts = write_defect_folder(out, train, test, others, args.n_per_defect, rng, args.colour, args.n_test_good,
                                     force=args.force)
        log.info("wrote %s: %s", out, counts)
        return counts

    run_main(work)


if __name__ == "__main__":
    main()

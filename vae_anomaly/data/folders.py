"""A user's images in folders: MVTec AD's layout (the one anomalib's ``Folder`` and ``MVTec``
datamodules read), read with Pillow into float32 arrays in [0, 1] of one size.

    D/train/good/*.png                        normal images for training (and validation)
    D/test/good/*.png                         normal test images
    D/test/<defect>/*.png                     anomalous test images, one folder per defect type
    D/ground_truth/<defect>/<stem>_mask.png   optional: white (> 127) = defect pixels

PNG, JPEG, BMP and TIFF, 8- or 16-bit, greyscale or colour; every image is resized to one
(H, W) (bilinear) and its mask alike (nearest). Files are taken in the sorted order of their
names, so the same folder gives the same arrays. A bad file stops the read with one line
naming it, before any training.
"""
from __future__ import annotations

import glob
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL_FOLDER = "good"
NORMAL_KIND = "normal"  # splits.NORMAL: the kind of a test/good image
# Pillow modes of greyscale images with more than 8 bits, and what their values are divided by.
WIDE_GREY = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}
GREY_MODES = ("1", "L", "LA", "La", *WIDE_GREY)


@dataclass
class FolderImages:
    train: np.ndarray  # float32 (N, C, H, W) in [0, 1]: train/good
    train_files: list[str]  # relative to the folder, '/'-separated
    test: np.ndarray  # float32 (M, C, H, W): test/good, then each defect folder in sorted order
    test_kind: np.ndarray  # str (M,): "normal" for test/good, else the defect folder's name
    test_files: list[str]
    test_mask: np.ndarray  # bool (M, H, W): defect pixels (all False for good images and unknown masks)
    mask_known: np.ndarray  # bool (M,): good images, and defect images whose mask was read
    channels: int  # 1 or 3


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if _is_image(p))


def image_files(path: str | Path) -> list[Path]:
    """The image files of a folder (directly inside it, sorted), of a glob pattern (sorted), or
    the one file ``path``; UserError if there are none."""
    text = str(path)
    if any(c in text for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if _is_image(Path(p)))
        where = f"the glob {text!r}"
    else:
        path = Path(path)
        if path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{path}: not an image file; give {', '.join(IMAGE_SUFFIXES)} files")
            return [path]
        if not path.is_dir():
            raise UserError(f"{path}: no such file or folder")
        files, where = _images_in(path), str(path)
    if not files:
        raise UserError(f"{where} holds no {', '.join(IMAGE_SUFFIXES)} files; give a folder (or glob) of images")
    return files


def _open(file: Path):  # -> PIL.Image.Image, loaded
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(file)
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"{file} is not a readable image ({reason}); remove or replace it") from None
    return image


def _is_colour(image) -> bool:
    if image.mode == "P":  # a palette: colour unless every entry is grey
        palette = np.asarray(image.convert("RGB"))
        return bool((palette.max(axis=-1) != palette.min(axis=-1)).any())
    return image.mode not in GREY_MODES


def infer_channels(files: list[Path]) -> int:
    """3 if any of ``files`` is a colour image (RGB, RGBA, a colour palette, CMYK, YCbCr, ...), else 1."""
    return 3 if any(_is_colour(_open(f)) for f in files) else 1


def _pixels(image, size: tuple[int, int], channels: int) -> np.ndarray:
    """float32 (channels, H, W) in [0, 1]: ``image`` converted and resized to ``size`` (H, W)."""
    from PIL import Image

    height, width = size
    if image.mode in WIDE_GREY:  # >8-bit grey: scaled as floats, never clipped to 8 bits
        grey = np.asarray(image, dtype=np.float32) / WIDE_GREY[image.mode]
        resized = Image.fromarray(grey, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        plane = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
        return np.repeat(plane[None], channels, axis=0)
    converted = image.convert("L" if channels == 1 else "RGB")
    resized = np.asarray(converted.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return resized[None] if channels == 1 else resized.transpose(2, 0, 1)


def read_images(files: list[Path], size: tuple[int, int], channels: int) -> np.ndarray:
    """float32 (N, channels, H, W) in [0, 1], each file resized to ``size`` = (H, W)."""
    out = np.empty((len(files), channels, *size), dtype=np.float32)
    for i, file in enumerate(files):
        out[i] = _pixels(_open(file), size, channels)
    return out


def read_mask(file: Path, size: tuple[int, int]) -> np.ndarray:
    """bool (H, W): the white (> half the maximum) pixels of a mask, resized (nearest) to ``size``."""
    from PIL import Image

    image = _open(file)
    if image.mode in WIDE_GREY:
        values = np.asarray(image, dtype=np.float32) / WIDE_GREY[image.mode]
    else:
        values = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    resized = Image.fromarray(values, mode="F").resize((size[1], size[0]), Image.Resampling.NEAREST)
    return np.asarray(resized) > 0.5


def _mask_files(truth: Path, images: list[Path], where: Path) -> list[Path]:
    """The mask of each image in ``truth`` (``<stem>_mask.*`` or ``<stem>.*``); UserError for an
    image without one, or a mask without its image."""
    masks = {p.stem: p for p in _images_in(truth)}
    stems = {image.stem for image in images}
    found = []
    for image in images:
        mask = masks.get(f"{image.stem}_mask") or masks.get(image.stem)
        if mask is None:
            raise UserError(f"{image} has no mask: looked for {truth}/{image.stem}_mask.png (or .{image.suffix[1:]}, "
                            f"or {image.stem}.*); add it, or remove {truth} to score this defect at image level only")
        found.append(mask)
    for stem, mask in masks.items():
        if stem not in stems and stem.removesuffix("_mask") not in stems:
            raise UserError(f"{mask} has no image {where / truth.name}/{stem.removesuffix('_mask')}.*; remove the mask "
                            "or add its image")
    return found


def load_folder(path: str | Path, size: tuple[int, int] | list[int], channels: int = 0) -> FolderImages:
    """The images of ``path`` (module docstring), resized to ``size`` (H, W); ``channels`` 0 is
    inferred from train/good (:func:`infer_channels`), 1 is greyscale, 3 RGB."""
    root = Path(path)
    size = (int(size[0]), int(size[1]))
    if channels not in (0, 1, 3):
        raise UserError(f"data.folder.channels = {channels!r}: expected 0 (inferred), 1 (greyscale) or 3 (RGB)")
    if min(size) < 1:
        raise UserError(f"data.folder.size = {list(size)}: both sides must be at least 1 pixel")
    if not root.is_dir():
        raise UserError(f"data.folder.path {root}: no such folder; give a folder holding train/good/ and test/ "
                        "(MVTec AD's layout, docs/images.md)")
    good = root / "train" / NORMAL_FOLDER
    if not good.is_dir():
        raise UserError(f"{root} has no train/{NORMAL_FOLDER}/ folder of normal images; lay it out as MVTec AD: "
                        f"train/{NORMAL_FOLDER}/, test/{NORMAL_FOLDER}/, test/<defect>/ (docs/images.md)")
    train_files = _images_in(good)
    if not train_files:
        raise UserError(f"{good} holds no {', '.join(IMAGE_SUFFIXES)} files; put the normal training images there")
    test_root = root / "test"
    folders = sorted(p for p in test_root.iterdir() if p.is_dir()) if test_root.is_dir() else []
    test_groups = [(f, _images_in(f)) for f in folders]
    test_groups = [(f, files) for f, files in test_groups if files]
    if not test_groups:
        raise UserError(f"{test_root} holds no images: put normal test images in test/{NORMAL_FOLDER}/ and anomalous "
                        "ones in test/<defect>/")
    test_groups.sort(key=lambda group: (group[0].name != NORMAL_FOLDER, group[0].name))
    truth_root = root / "ground_truth"
    defects = {f.name for f, _ in test_groups if f.name != NORMAL_FOLDER}
    if truth_root.is_dir():
        for truth in sorted(p for p in truth_root.iterdir() if p.is_dir() and p.name != NORMAL_FOLDER):
            if truth.name not in defects:
                raise UserError(f"{truth} has no test folder {test_root / truth.name} of its images; remove it or "
                                "add the images")
    mask_of: dict[Path, Path] = {}
    for folder, files in test_groups:
        truth = truth_root / folder.name
        if folder.name == NORMAL_FOLDER:
            continue
        if truth.is_dir():
            mask_of.update(zip(files, _mask_files(truth, files, test_root)))
        else:
            log.info("%s has no masks (no %s): its %d images are scored as images, not by pixel", folder, truth,
                     len(files))
    test_files = [f for _, files in test_groups for f in files]
    kinds = [NORMAL_KIND if folder.name == NORMAL_FOLDER else folder.name
             for folder, files in test_groups for _ in files]
    for file in [*train_files, *test_files, *mask_of.values()]:  # every file readable, before any pixel is kept
        _open(file)
    if channels == 0:
        channels = infer_channels(train_files)
    train = read_images(train_files, size, channels)
    test = read_images(test_files, size, channels)
    test_mask = np.zeros((len(test_files), *size), dtype=bool)
    known = np.array([kind == NORMAL_KIND for kind in kinds])
    for i, file in enumerate(test_files):
        if file in mask_of:
            test_mask[i] = read_mask(mask_of[file], size)
            known[i] = True
    counts = {folder.name: len(files) for folder, files in test_groups}
    log.info("read %s: train/good %d images, test %s, %d masks; %d channel(s), resized to %dx%d", root,
             len(train_files), counts, len(mask_of), channels, *size)
    relative = [p.relative_to(root).as_posix() for p in [*train_files, *test_files]]
    return FolderImages(train, relative[:len(train_files)], test, np.array(kinds), relative[len(train_files):],
                        test_mask, known, channels)

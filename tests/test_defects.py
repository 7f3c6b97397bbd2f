"""The defect benchmark's folders (benchmarks/defects.py): local defects with honest masks, the
MVTec layout the folder source reads, the same bytes from the same seed."""
import colorsys

import numpy as np
import pytest

from benchmarks.defects import COLOUR_DEFECTS, DEFECTS, MIN_CHANGE, add_defect, colourise, write_defect_folder
from vae_anomaly.data.folders import load_folder
from vae_anomaly.errors import UserError


def rings(n: int, seed: int = 0) -> np.ndarray:
    """(n, 1, 28, 28) soft rings, digit-like strokes on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    out = []
    for _ in range(n):
        cy, cx = 14 + rng.normal(0, 1, 2)
        out.append(np.exp(-((np.hypot(yy - cy, xx - cx) - 8) ** 2) / 3.0))
    return np.array(out, dtype=np.float32)[:, None]


@pytest.mark.parametrize("colour", [False, True])
def test_each_defect_changes_only_its_masked_region_and_stays_local(colour):
    rng = np.random.default_rng(0)
    images = rings(20)
    others = 1 - rings(10, seed=1)  # another "class": bright where the rings are dark
    if colour:
        images, others = colourise(images, rng), colourise(others, rng)
    for kind in COLOUR_DEFECTS if colour else DEFECTS:
        for image in images[:5]:
            broken, mask = add_defect(image, kind, rng, others)
            change = np.abs(broken - image).max(axis=0)
            assert mask.sum() >= 4 and mask.mean() < 0.3, kind
            assert (change[mask] >= MIN_CHANGE).all(), kind  # every masked pixel visibly changed
            assert broken.min() >= 0 and broken.max() <= 1


def test_the_colour_defect_changes_the_hue_not_the_brightness():
    rng = np.random.default_rng(0)
    image = colourise(rings(1), rng)[0]
    broken, mask = add_defect(image, "colour", rng, image[None])
    hue = [colorsys.rgb_to_hsv(*broken[:, y, x])[0] - colorsys.rgb_to_hsv(*image[:, y, x])[0]
           for y, x in np.argwhere(mask)]
    assert np.abs((np.array(hue) + 0.5) % 1 - 0.5).min() > 0.2  # far round the colour wheel
    np.testing.assert_allclose(broken.max(axis=0)[mask], image.max(axis=0)[mask], atol=0.05)


def test_the_folder_has_the_mvtec_layout_reads_back_and_repeats_byte_for_byte(tmp_path):
    def write(out, **kw):
        return write_defect_folder(out, rings(12), rings(30, seed=2), 1 - rings(8, seed=3), 4,
                                   np.random.default_rng(7), colour=False, n_good=6, **kw)

    counts = write(tmp_path / "a")
    assert counts == {"train/good": 12, "test/good": 6, **{f"test/{k}": 4 for k in DEFECTS}}
    got = load_folder(tmp_path / "a", (28, 28))
    assert got.mask_known.all() and got.test_mask[got.test_kind != "normal"].any(axis=(1, 2)).all()
    write(tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    with pytest.raises(UserError, match="exists and is not empty"):
        write(tmp_path / "a")
    write(tmp_path / "a", force=True)
    with pytest.raises(UserError, match="normal test images are needed"):
        write_defect_folder(tmp_path / "c", rings(5), rings(5), rings(5), 4, np.random.default_rng(0), False, 6)
    assert not (tmp_path / "c").exists()

"""Pixel ROC-AUC and AUPRO: a case computed by hand, a brute-force reference, the limits."""
import numpy as np
import pytest

from vae_anomaly.evaluation.pixel import aupro, pixel_metrics, pixel_roc_auc, pro_curve, regions

# Two 2x3 images. Image A's defect is its top-left pair (one region of 2 pixels), image B's
# its bottom-right pixel (one region of 1); the other 9 pixels are defect-free.
MASKS = np.array([[[1, 1, 0], [0, 0, 0]],
                  [[0, 0, 0], [0, 0, 1]]], dtype=bool)
MAPS = np.array([[[0.9, 0.5, 0.8], [0.1, 0.2, 0.3]],
                 [[0.7, 0.4, 0.0], [0.0, 0.0, 0.6]]])


def test_aupro_of_a_case_computed_by_hand():
    # Thresholds from the top: 0.9 (A's region, PRO 1/2 * 1/2 = .25), 0.8 and 0.7 (defect-free:
    # FPR 1/9, 2/9), 0.6 (B's region: PRO .25 + .5 = .75), 0.5 (A's region: PRO 1), then only
    # defect-free pixels. Up to FPR 0.3 the area is .25 * 2/9 + 1 * (0.3 - 2/9) = 0.3 - 1/6,
    # and divided by 0.3: 4/9.
    fpr, pro = pro_curve(MAPS, MASKS)
    np.testing.assert_allclose(fpr[:7], [0, 0, 1 / 9, 2 / 9, 2 / 9, 2 / 9, 3 / 9])
    np.testing.assert_allclose(pro[:7], [0, .25, .25, .25, .75, 1, 1])
    assert aupro(MAPS, MASKS) == pytest.approx(4 / 9, abs=1e-12)
    # Pixel ROC-AUC: of the 3 x 9 (defect, defect-free) pairs, the defect pixel ranks higher in
    # 9 (0.9) + 7 (0.6: above all but 0.8, 0.7) + 7 (0.5) = 23.
    assert pixel_roc_auc(MAPS, MASKS) == pytest.approx(23 / 27, abs=1e-12)


def brute_force_aupro(maps, masks, limit):
    """Every distinct value as a threshold, each region's overlap counted directly, then the
    trapezoid up to the limit with the last segment interpolated."""
    labelled, n = regions(masks)
    normal = labelled == 0
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = above[normal].mean()
        pro = np.mean([above[labelled == r].mean() for r in range(1, n + 1)])
        points.append((fpr, pro))
    x, y = map(np.array, zip(*points))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(zip(x, y), zip(x[1:], y[1:])):
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [0.3, 1.0])
def test_aupro_agrees_with_a_brute_force_reference_with_ties(seed, limit):
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[0, 1:4, 1:3] = True
    masks[0, 6:8, 6:8] = True  # a second region in the same image
    masks[2, 3:6, 2:7] = True
    maps = np.round(rng.random((4, 8, 8)) + 0.4 * masks, 1)  # one decimal: many ties
    assert aupro(maps, masks, limit) == pytest.approx(brute_force_aupro(maps, masks, limit), abs=1e-9)


def test_a_perfect_map_scores_one_an_inverted_one_zero():
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[1, 2:4, 2:5] = True
    assert aupro(masks.astype(float), masks) == pytest.approx(1.0)
    assert pixel_roc_auc(masks.astype(float), masks) == 1.0
    assert aupro(-masks.astype(float) + np.random.default_rng(0).random(masks.shape) * 0.1, masks) == 0.0


def test_a_random_map_gives_about_half_the_limit():
    # PRO(t) and FPR(t) are the same share of pixels for values independent of the masks, so
    # the curve is the diagonal: area 0.3^2 / 2, divided by 0.3.
    masks = np.zeros((200, 16, 16), dtype=bool)
    masks[:100, 4:9, 4:9] = True
    maps = np.random.default_rng(0).random(masks.shape)
    assert aupro(maps, masks) == pytest.approx(0.15, abs=0.01)


def test_regions_are_8_connected_within_an_image_and_never_across():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    masks[0, 3, 3] = True
    masks[1, 0, 0] = True  # the same place in the next image: its own region
    _, n = regions(masks)
    assert n == 3


def test_pixel_metrics_counts_and_leaves_undefined_metrics_out():
    got = pixel_metrics(MAPS, MASKS)
    assert got == {"roc_auc": round(23 / 27, 4), "aupro": round(4 / 9, 4), "n_images": 2, "n_regions": 2,
                   "anomalous_pixel_share": 0.25}
    only_normal = pixel_metrics(MAPS, MASKS, known=np.array([False, False]) | (MASKS.sum(axis=(1, 2)) == 0))
    assert only_normal["roc_auc"] is None and only_normal["aupro"] is None and only_normal["n_images"] == 0
    first = pixel_metrics(MAPS, MASKS, known=np.array([True, False]))
    assert first["n_images"] == 1 and first["n_regions"] == 1

"""Pixel ROC-AUC and AUPRO: a case computed by hand, a brute-force reference, the limits."""
import numpy as np
import pytest
from scipy import ndimage

from vae_anomaly.evaluation.pixel import (
    FPR_LIMIT,
    aupro,
    defect_regions,
    pixel_metrics,
    pixel_roc_auc,
    pro_curve,
)

# Two 3x3 images. Image A's defect is two diagonal neighbours (one 8-connected region of 2
# pixels; two regions under 4-connectivity), image B's its bottom-right pixel (a region of 1);
# the other 15 pixels are defect-free: 0.8, 0.7, 0.6, 0.5, 0.4 and ten of 0.1 or 0.0.
MASKS = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 0]],
                  [[0, 0, 0], [0, 0, 0], [0, 0, 1]]], dtype=bool)
MAPS = np.array([[[0.9, 0.8, 0.1], [0.7, 0.4, 0.1], [0.1, 0.1, 0.0]],
                 [[0.6, 0.5, 0.0], [0.4, 0.0, 0.0], [0.0, 0.1, 0.6]]])
# Thresholds from the top (FPR in 15ths; PRO the mean of A's and B's overlap):
#   0.9  A's first pixel            (0, 1/2 * 1/2 = .25)
#   0.8  defect-free                (1/15, .25)
#   0.7  defect-free                (2/15, .25)
#   0.6  B's pixel and a defect-free one, tied: (3/15, .25 + .5 = .75)
#   0.5  defect-free                (4/15, .75)
#   0.4  A's second pixel and a defect-free one, tied: (5/15, 1)
#   0.1, 0.0  the rest, defect-free (10/15, 1), (1, 1)
HAND_FPR = np.array([0, 0, 1, 2, 3, 4, 5, 10, 15]) / 15
HAND_PRO = np.array([0, .25, .25, .25, .75, .75, 1, 1, 1])
# Up to FPR 0.3 = 4.5/15, by trapezoids of width 1/15: .25 + .25 + (.25 + .75)/2 + .75, then
# half a width to 4.5/15, where the tie's segment from (4/15, .75) to (5/15, 1) is at .875:
# (.75 + .875)/2 * 1/2 = .40625. Area 2.15625/15, divided by 4.5/15: 2.15625/4.5 = 23/48.
HAND_AUPRO = 23 / 48
# Up to FPR 1: the same to 4/15, (.75 + 1)/2 to 5/15, then 1 for 10/15: 12.625/15 = 101/120.
HAND_AUPRO_FULL = 101 / 120
# Pixel ROC-AUC over the 3 x 15 (defect, defect-free) pairs, a tie counting one half: 0.9 ranks
# above all 15; 0.6 above 12 and tied with 1 (12.5); 0.4 above 10 and tied with 1 (10.5).
HAND_ROC_AUC = 38 / 45


def test_the_pro_curve_and_aupro_of_a_case_computed_by_hand():
    fpr, pro = pro_curve(MAPS, MASKS)
    np.testing.assert_allclose(fpr, HAND_FPR, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pro, HAND_PRO, rtol=0, atol=1e-12)
    assert aupro(MAPS, MASKS) == pytest.approx(HAND_AUPRO, abs=1e-12)
    assert aupro(MAPS, MASKS, fpr_limit=1.0) == pytest.approx(HAND_AUPRO_FULL, abs=1e-12)
    assert pixel_roc_auc(MAPS, MASKS) == pytest.approx(HAND_ROC_AUC, abs=1e-12)


def test_pixel_metrics_of_the_hand_case_unrounded_and_8_connected():
    assert pixel_metrics(MAPS, MASKS) == {
        "roc_auc": pytest.approx(HAND_ROC_AUC, abs=1e-12), "aupro": pytest.approx(HAND_AUPRO, abs=1e-12),
        "n_images": 2, "n_regions": 2, "anomalous_pixel_share": pytest.approx(3 / 18, abs=1e-12)}


def brute_force_pro_curve(maps, masks):
    """Every distinct value as a threshold, the regions labelled image by image as MVTec AD's
    code labels them, each FPR and overlap counted directly."""
    regions = region_masks(masks)
    points = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = above[~masks].mean()
        pro = np.mean([above[i][region].mean() for i, region in regions])
        points.append((fpr, pro))
    return tuple(map(np.array, zip(*points)))


def region_masks(masks):
    """(image index, region mask) for every 8-connected region of every image."""
    out = []
    for i, m in enumerate(masks):
        labelled, n = ndimage.label(m, structure=np.ones((3, 3), dtype=int))
        out += [(i, labelled == k) for k in range(1, n + 1)]
    return out


def brute_force_aupro(maps, masks, limit):
    """The trapezoids of the brute-force curve one by one, the last cut at the limit."""
    x, y = brute_force_pro_curve(maps, masks)
    area = 0.0
    for x0, y0, x1, y1 in zip(x, y, x[1:], y[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            x1, y1 = limit, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (y0 + y1) / 2 * (x1 - x0)
    return area / limit


@pytest.mark.parametrize("seed", range(6))
def test_aupro_agrees_with_a_brute_force_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((4, 7, 7)) < 0.25  # scattered defects: many regions, diagonal contacts
    masks[0, 0, 0], masks[0, 0, 1] = True, False  # at least one defect and one defect-free pixel
    maps = np.round(rng.random(masks.shape) + 0.3 * masks, 1)  # one decimal: many ties
    fpr, pro = pro_curve(maps, masks)
    ref_fpr, ref_pro = brute_force_pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, ref_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(pro, ref_pro, rtol=0, atol=1e-12)
    for limit in (0.05, FPR_LIMIT, 1.0):
        assert aupro(maps, masks, limit) == pytest.approx(brute_force_aupro(maps, masks, limit), abs=1e-9)


def test_a_perfect_map_scores_one_an_inverted_one_zero():
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[1, 2:4, 2:5] = True
    masks[2, 0, 0] = True
    noise = np.random.default_rng(0).random(masks.shape) * 0.5
    assert aupro(masks + noise, masks) == 1.0
    assert pixel_roc_auc(masks + noise, masks) == 1.0
    assert aupro(masks, masks) == 1.0  # a bool map, two values
    # every defect-free pixel above every defect pixel: the PRO stays 0 until the FPR is 1
    assert aupro(noise - masks, masks) == 0.0
    assert aupro(noise - masks, masks, fpr_limit=1.0) == 0.0
    assert pixel_roc_auc(noise - masks, masks) == 0.0


@pytest.mark.parametrize("limit", [FPR_LIMIT, 1.0])
def test_a_constant_map_gives_exactly_half_the_limit(limit):
    # One threshold passes every pixel at once: the curve is (0, 0) to (1, 1), the diagonal,
    # whose area up to the limit is limit^2 / 2; divided by the limit, limit / 2.
    assert aupro(np.zeros(MAPS.shape), MASKS, limit) == pytest.approx(limit / 2, abs=1e-12)
    assert pixel_roc_auc(np.zeros(MAPS.shape), MASKS) == 0.5


@pytest.mark.parametrize("limit", [FPR_LIMIT, 1.0])
def test_a_random_map_gives_about_half_the_limit(limit):
    # Values independent of the masks: at each threshold the share of a region's pixels above
    # it and the share of defect-free ones are the same in expectation, so the curve is about
    # the diagonal and the AUPRO about limit / 2 (0.15 for 0.3). Over seeds at this size its
    # standard deviation is about 0.005.
    masks = np.zeros((100, 32, 32), dtype=bool)
    masks[::2, 8:16, 8:16] = True
    maps = np.random.default_rng(0).random(masks.shape)
    assert aupro(maps, masks, limit) == pytest.approx(limit / 2, abs=0.02)
    assert pixel_roc_auc(maps, masks) == pytest.approx(0.5, abs=0.02)


def test_ties_pass_together_whatever_the_pixels_order():
    # A tie of a defect pixel with a defect-free one is one diagonal step, never a staircase,
    # so mirroring and reordering the images (which reorders pixels within the tie) changes
    # nothing.
    flipped = (MAPS[::-1, ::-1, ::-1], MASKS[::-1, ::-1, ::-1])
    np.testing.assert_array_equal(np.c_[pro_curve(*flipped)], np.c_[pro_curve(MAPS, MASKS)])
    assert aupro(*flipped) == aupro(MAPS, MASKS)


def test_regions_are_8_connected_within_an_image_and_never_across():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = True  # diagonal neighbours: one region
    masks[0, 3, 3] = True
    masks[1, 0, 0] = True  # the same place in the next image: a region of its own
    labelled, n = defect_regions(masks)
    assert n == 3 and labelled[0, 0, 0] == labelled[0, 1, 1] != labelled[1, 0, 0]


def test_one_class_leaves_the_metrics_undefined():
    only_normal = np.zeros(MASKS.shape, dtype=bool)
    assert np.isnan(pixel_roc_auc(MAPS, only_normal))
    got = pixel_metrics(MAPS, only_normal)
    assert got == {"roc_auc": None, "aupro": None, "n_images": 2, "n_regions": 0, "anomalous_pixel_share": 0.0}
    all_defect = pixel_metrics(MAPS, np.ones(MASKS.shape, dtype=bool))
    assert all_defect["roc_auc"] is None and all_defect["aupro"] is None and all_defect["n_regions"] == 2
    with pytest.raises(ValueError, match="defect-free pixels"):
        aupro(MAPS, only_normal)


def test_known_keeps_only_the_images_whose_mask_is_known():
    first = pixel_metrics(MAPS, MASKS, known=np.array([True, False]))
    alone = pixel_metrics(MAPS[:1], MASKS[:1])
    assert first == alone and first["n_images"] == 1 and first["n_regions"] == 1
    assert first["anomalous_pixel_share"] == pytest.approx(2 / 9)
    none = pixel_metrics(MAPS, MASKS, known=np.array([False, False]))
    assert none == {"roc_auc": None, "aupro": None, "n_images": 0, "n_regions": 0, "anomalous_pixel_share": None}
    with pytest.raises(ValueError, match="one flag per image"):
        pixel_metrics(MAPS, MASKS, known=np.array([True]))


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="same shape"):
        aupro(MAPS[:, :2], MASKS)
    with pytest.raises(ValueError, match="NaN"):
        aupro(np.where(MASKS, np.nan, MAPS), MASKS)
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(MAPS, MASKS, fpr_limit=0)

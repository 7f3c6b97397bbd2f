"""Pixel-level metrics of anomaly maps against defect masks: pixel ROC-AUC and AUPRO, as MVTec
AD (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021) and anomalib
report them.

AUPRO follows MVTec AD's own evaluation code exactly (``pro_curve_util.compute_pro`` and
``generic_util.trapezoid(x, y, x_max)``): regions are the 8-connected components of each
image's mask; every distinct map value is a threshold t, at which the FPR is the share of all
defect-free pixels (of all images) with a value >= t and the PRO the mean, over every region
of every image, of the share of the region's pixels >= t; the curve from (0, 0) is integrated
by the trapezoid rule up to FPR ``fpr_limit`` (0.3), the PRO interpolated linearly there, and
the area divided by ``fpr_limit``. anomalib's ``AUPRO`` (``anomalib/metrics/aupro.py``,
``fpr_limit=0.3``) means the same curve and the same 8-connectivity, but resamples each
region's ROC curve onto a shared grid of indices before it averages them, an approximation
of this exact curve.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from sklearn import metrics

FPR_LIMIT = 0.3  # MVTec AD's pro_integration_limit and anomalib's AUPRO(fpr_limit=0.3)

# 8-connectivity, as MVTec AD's code labels (scipy.ndimage.label, np.ones((3, 3))) and
# anomalib's (cv2.connectedComponents, connectivity 8; on GPU a 3x3 max-pool). The 3x3 of ones
# sits in the middle plane of a 3x3x3 structure, so that one call labels the whole stack and a
# region never reaches into the next image.
REGION_STRUCTURE = np.zeros((3, 3, 3), dtype=int)
REGION_STRUCTURE[1] = 1


def checked(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``maps`` and ``masks`` (as bool) if both are (N, H, W) of one shape and no map value is
    NaN; else a ValueError that says which."""
    maps, masks = np.asarray(maps), np.asarray(masks, dtype=bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {maps.shape} and defect masks {masks.shape} must both be "
                         "(images, height, width), of the same shape")
    if np.issubdtype(maps.dtype, np.floating) and np.isnan(maps).any():
        raise ValueError(f"{int(np.isnan(maps).sum())} anomaly map values are NaN: a map ranks "
                         "pixels, so every value must be a number")
    return maps, masks


def defect_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Each pixel's defect region (int (N, H, W), numbered from 1 over all images, 0 where
    defect-free) and the number of regions: the 8-connected components of each image's mask."""
    labelled, count = ndimage.label(np.asarray(masks, dtype=bool), structure=REGION_STRUCTURE)
    return labelled, int(count)


def pixel_roc_auc(maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC-AUC over every pixel of every image (maps (N, H, W), higher = more anomalous; masks
    bool (N, H, W)), scikit-learn's; NaN when the masks hold one class only."""
    maps, masks = checked(maps, masks)
    if masks.all() or not masks.any():
        return float("nan")
    return float(metrics.roc_auc_score(masks.ravel(), maps.ravel()))


def region_pro_curve(values: np.ndarray, region: np.ndarray, n_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """pro_curve of flat map ``values`` and their pixels' ``region`` (defect_regions, flat).

    Written out, as MVTec AD's compute_pro computes it (that is a script, not a package), rather
    than taken from anomalib, whose AUPRO needs torch tensors and resamples the curve. compute_pro
    sorts every pixel with its payload (an argsort, the slow part); here the values alone are
    sorted, which gives each threshold and how many pixels reach it, and only the defect pixels
    are sorted with their payload, so that a binary search tells how many of them, and how much
    PRO, reach each threshold: about half the time, the same numbers, memory linear in the pixels.
    """
    defect = region > 0
    n_defect = int(defect.sum())
    n_normal = len(values) - n_defect
    if n_regions == 0 or n_normal == 0:
        raise ValueError("the PRO curve needs both defect pixels and defect-free pixels; "
                         f"these masks hold {n_regions} defect regions and {n_normal} defect-free pixels")
    # A pixel of region r that reaches the threshold adds 1 / (|r| n_regions) to the PRO.
    step = 1.0 / (np.bincount(region, minlength=n_regions + 1) * float(n_regions))
    order = np.argsort(values[defect])
    defect_values = values[defect][order]
    pro_at_or_above = np.r_[np.cumsum(step[region[defect]][order][::-1])[::-1], 0.0]
    ordered = np.sort(values)
    # Ascending: the first pixel of each run of equal values, which reach a threshold together.
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    thresholds = ordered[starts]
    del ordered
    below = np.searchsorted(defect_values, thresholds, side="left")  # defect pixels under each
    false_positives = (len(values) - starts) - (n_defect - below)  # integers: the FPR ends at 1 exactly
    fpr = false_positives[::-1] / n_normal
    pro = np.minimum(pro_at_or_above[below][::-1], 1.0)
    pro[-1] = 1.0  # the lowest value passes every pixel; the running sum may miss 1 by round-off
    return np.r_[0.0, fpr], np.r_[0.0, pro]


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) with every distinct map value as the threshold (a pixel counts when its value
    is >= it), from (0, 0), fpr ascending, ending at (1, 1): MVTec AD's ``compute_pro``."""
    maps, masks = checked(maps, masks)
    labelled, n_regions = defect_regions(masks)
    return region_pro_curve(maps.ravel(), labelled.ravel(), n_regions)


def trapezoid_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """The trapezoid-rule area under y(x) from x[0] to ``x_max``, y interpolated linearly at
    ``x_max`` between its neighbours: MVTec AD's ``trapezoid(x, y, x_max)``. x ascending (a value
    may repeat), x[0] <= x_max."""
    inside = int(np.searchsorted(x, x_max, side="right"))  # the points with x <= x_max
    xs, ys = x[:inside], y[:inside]
    area = float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2))
    if inside < len(x) and xs[-1] < x_max:
        y_max = ys[-1] + (y[inside] - ys[-1]) * (x_max - xs[-1]) / (x[inside] - xs[-1])
        area += float((ys[-1] + y_max) / 2 * (x_max - xs[-1]))
    return area


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """The area under the PRO curve up to FPR ``fpr_limit``, divided by ``fpr_limit``: 1 for a
    map that ranks every defect pixel above every defect-free one, 0 for one that ranks them all
    below, ``fpr_limit`` / 2 for a constant map (the curve is the diagonal), and about that for
    values drawn independently of the masks."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit = {fpr_limit}: the AUPRO's FPR limit must lie in (0, 1] (MVTec AD's is 0.3)")
    fpr, pro = pro_curve(maps, masks)
    return trapezoid_up_to(fpr, pro, fpr_limit) / fpr_limit


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, known: np.ndarray | None = None) -> dict[str, Any]:
    """Pixel ROC-AUC and AUPRO over the images with ``known`` True (bool (N,); all when None),
    the number of images and defect regions, and the share of defect pixels; a metric the
    images cannot define (no defect pixel or no defect-free pixel) is None. Floats unrounded, as
    metrics.py gives its ranking metrics."""
    maps, masks = checked(maps, masks)
    keep = np.ones(len(maps), dtype=bool) if known is None else np.asarray(known, dtype=bool)
    if keep.shape != (len(maps),):
        raise ValueError(f"known has shape {keep.shape}: it needs one flag per image, ({len(maps)},)")
    maps, masks = maps[keep], masks[keep]
    defined = bool(masks.any() and not masks.all())
    return {
        "roc_auc": pixel_roc_auc(maps, masks) if defined else None,
        "aupro": aupro(maps, masks) if defined else None,
        "n_images": int(keep.sum()),
        "n_regions": defect_regions(masks)[1],
        "anomalous_pixel_share": float(masks.mean()) if masks.size else None,
    }

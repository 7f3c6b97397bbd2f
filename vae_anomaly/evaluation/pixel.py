"""Pixel-level metrics of anomaly maps against defect masks, as MVTec AD (Bergmann et al.,
"The MVTec Anomaly Detection Dataset", IJCV 2021) and anomalib report them: pixel ROC-AUC and
AUPRO, the area under the per-region-overlap curve up to a false-positive rate of 0.3.

Written here after MVTec AD's own evaluation code (``generic_util.compute_pro`` and
``trapezoid``, a script, not a package) and agreeing with anomalib's ``AUPRO`` (which needs
torch tensors and its own thresholds): regions are the 8-connected components of each mask
(``scipy.ndimage.label``, a 3x3 structure of ones); at a threshold t the FPR is the share of
all defect-free pixels with a value >= t, the PRO the mean over every region of every image of
the share of its pixels >= t; the curve is integrated by the trapezoid rule from FPR 0 to the
limit, interpolated at the limit, and divided by it. Exact: every distinct map value is a
threshold (one sort of all pixels), not a grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np

FPR_LIMIT = 0.3  # MVTec AD's and anomalib's
DIGITS = 4  # metrics.py rounds its ranking metrics alike


def pixel_roc_auc(maps: np.ndarray, masks: np.ndarray) -> float:
    """ROC-AUC over every pixel of every image (maps (N, H, W), higher = more anomalous; masks
    bool (N, H, W)); NaN when the masks hold one class only."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(masks, dtype=bool).ravel()
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, np.asarray(maps, dtype=np.float64).ravel()))


def regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """int (N, H, W): each pixel's defect region, numbered from 1 over all images (0 outside),
    and the number of regions; regions are 8-connected within an image."""
    from scipy.ndimage import label

    # One call over the stack: the 3x3 structure of ones in the middle plane only, so that
    # regions connect within an image, never across images.
    structure = np.zeros((3, 3, 3), dtype=int)
    structure[1] = 1
    labelled, count = label(np.asarray(masks, dtype=bool), structure=structure)
    return labelled.astype(np.int64), int(count)


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at every distinct map value taken as the threshold, from (0, 0), fpr ascending."""
    labelled, n_regions = regions(masks)
    values = np.asarray(maps, dtype=np.float64).ravel()
    region = labelled.ravel()
    n_normal = int((region == 0).sum())
    if n_regions == 0 or n_normal == 0:
        raise ValueError("the PRO curve needs defect pixels and defect-free pixels")
    sizes = np.bincount(region, minlength=n_regions + 1).astype(np.float64)
    # Each pixel's step up the curve when the threshold passes it: a defect-free pixel adds
    # 1/n_normal to the FPR, a region's pixel 1/(|region| n_regions) to the mean overlap.
    fp_step = np.where(region == 0, 1.0 / n_normal, 0.0)
    pro_step = np.where(region > 0, 1.0 / (sizes[region] * n_regions), 0.0)
    order = np.argsort(-values, kind="stable")
    fpr, pro = np.cumsum(fp_step[order]), np.cumsum(pro_step[order])
    ordered = values[order]
    last_of_tie = np.append(ordered[1:] != ordered[:-1], True)  # ties pass the threshold together
    return (np.minimum(np.r_[0.0, fpr[last_of_tie]], 1.0), np.minimum(np.r_[0.0, pro[last_of_tie]], 1.0))


def area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """The trapezoid area under y(x) from x[0] to ``x_max``, y interpolated linearly at
    ``x_max`` (MVTec AD's ``trapezoid``); x ascending."""
    keep = x <= x_max
    area = float(np.trapezoid(y[keep], x[keep]))
    beyond = np.flatnonzero(x > x_max)
    if len(beyond) and keep.any():
        j = beyond[0]
        x0, y0, x1, y1 = x[j - 1], y[j - 1], x[j], y[j]
        y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_at) * (x_max - x0)
    return area


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = FPR_LIMIT) -> float:
    """The area under the PRO curve up to FPR ``fpr_limit``, divided by ``fpr_limit``: 1 for a
    map that ranks every defect pixel above every defect-free one."""
    fpr, pro = pro_curve(maps, masks)
    return float(area_up_to(fpr, pro, fpr_limit) / fpr_limit)


def pixel_metrics(maps: np.ndarray, masks: np.ndarray, known: np.ndarray | None = None) -> dict[str, Any]:
    """Pixel ROC-AUC and AUPRO over the images with ``known`` True (all when None), their
    counts, and the share of defect pixels; a metric the images cannot define (no defect or no
    defect-free pixel) is None."""
    keep = np.ones(len(maps), dtype=bool) if known is None else np.asarray(known, dtype=bool)
    maps, masks = np.asarray(maps)[keep], np.asarray(masks, dtype=bool)[keep]
    defined = masks.any() and not masks.all()
    return {
        "roc_auc": round(pixel_roc_auc(maps, masks), DIGITS) if defined else None,
        "aupro": round(aupro(maps, masks), DIGITS) if defined else None,
        "n_images": int(keep.sum()),
        "n_regions": regions(masks)[1],
        "anomalous_pixel_share": round(float(masks.mean()), 6) if masks.size else None,
    }

"""Streaming segmentation metrics from a confusion matrix (Cityscapes protocol: 19 train ids, ignore 255)."""
from __future__ import annotations

from typing import Any, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(np.int64, copy=False)


class StreamSegMetrics:
    """Accumulate an ``n_classes`` x ``n_classes`` confusion matrix (rows = ground truth, cols = prediction).

    Pixels whose label is outside ``[0, n_classes)`` (e.g. 255) are ignored.
    """

    def __init__(self, n_classes: int = 19) -> None:
        self.n_classes = n_classes
        self.confusion_matrix = np.zeros((n_classes, n_classes), dtype=np.int64)

    def update(self, label_trues: ArrayLike, label_preds: ArrayLike) -> None:
        """Add a batch: label maps of equal shape, e.g. (N, H, W) ground truth and argmax predictions."""
        trues, preds = _to_numpy(label_trues), _to_numpy(label_preds)
        if trues.shape != preds.shape:
            raise ValueError(f"label shape {trues.shape} differs from prediction shape {preds.shape}")
        self.confusion_matrix += self._fast_hist(trues.ravel(), preds.ravel())

    def _fast_hist(self, label_true: np.ndarray, label_pred: np.ndarray) -> np.ndarray:
        n = self.n_classes
        mask = (label_true >= 0) & (label_true < n)
        bad = (label_pred[mask] < 0) | (label_pred[mask] >= n)
        if bad.any():
            raise ValueError(f"predictions must be class ids in [0, {n}), got {label_pred[mask][bad][0]}")
        hist = np.bincount(n * label_true[mask] + label_pred[mask], minlength=n ** 2)
        return hist[: n ** 2].reshape(n, n)

    def get_results(self) -> dict[str, Any]:
        """Overall Acc, Mean Acc, FreqW Acc, Mean IoU (over classes present in labels or predictions) and
        Class IoU ({class: IoU}, NaN for classes that never occur)."""
        hist = self.confusion_matrix.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.diag(hist).sum() / hist.sum()
            acc_cls = np.nanmean(np.diag(hist) / hist.sum(axis=1))
            iu = np.diag(hist) / (hist.sum(axis=1) + hist.sum(axis=0) - np.diag(hist))
            mean_iu = np.nanmean(iu)
            freq = hist.sum(axis=1) / hist.sum()
            fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
        return {
            "Overall Acc": float(acc),
            "Mean Acc": float(acc_cls),
            "FreqW Acc": float(fwavacc),
            "Mean IoU": float(mean_iu),
            "Class IoU": dict(zip(range(self.n_classes), iu.tolist())),
        }

    @staticmethod
    def to_str(results: dict[str, Any]) -> str:
        """Human-readable summary (Class IoU omitted)."""
        return "\n".join(f"{k}: {v:f}" for k, v in results.items() if k != "Class IoU") + "\n"

    def reset(self) -> None:
        self.confusion_matrix[:] = 0

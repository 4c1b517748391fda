"""Per-image metric rows and their means (``result.txt`` / ``.csv`` of an evaluation)."""
from __future__ import annotations

import math
from typing import Iterable, Optional, Union


class MetricAccumulator:
    """Per-image metric rows and their means, for ``result.txt`` / ``.csv``.

    >>> acc = MetricAccumulator(); acc.add("1.png", psnr=20.0, ssim=0.8); acc.mean()["psnr"]
    20.0
    """

    def __init__(self, names: Optional[Iterable[str]] = None) -> None:
        self.names: list[str] = list(names or [])
        self.images: list[str] = []
        self.values: dict[str, list[float]] = {n: [] for n in self.names}

    def add(self, image: str, **metrics: float) -> None:
        """Record one image's metrics; a metric not given for this image is stored as NaN."""
        for n in metrics:
            if n not in self.values:
                self.names.append(n)
                self.values[n] = [math.nan] * len(self.images)
        self.images.append(image)
        for n in self.names:
            self.values[n].append(float(metrics.get(n, math.nan)))

    def __len__(self) -> int:
        return len(self.images)

    def mean(self) -> dict[str, float]:
        """Mean of each metric over the images that have it (NaN if none); inf values propagate."""
        out = {}
        for n in self.names:
            vals = [v for v in self.values[n] if not math.isnan(v)]
            out[n] = sum(vals) / len(vals) if vals else math.nan
        return out

    def rows(self) -> list[dict[str, Union[str, float]]]:
        """One dict per image: ``{"image": name, metric: value, …}``."""
        return [{"image": img, **{n: self.values[n][i] for n in self.names}} for i, img in enumerate(self.images)]

    def format(self, digits: int = 4) -> str:
        """Text report: one line per image then a ``mean`` line (``name  psnr=… ssim=…``)."""
        def line(name: str, vals: dict[str, float]) -> str:
            return name + "  " + " ".join(f"{n}={vals[n]:.{digits}f}" for n in self.names)

        lines = [line(r["image"], r) for r in self.rows()]  # type: ignore[arg-type]
        lines.append(line("mean", self.mean()))
        return "\n".join(lines) + "\n"

"""Shared test constants (the repository root, ../shared) and builders of tiny datasets in the real layouts.

Tests import these from ``helpers`` (tests/ is on sys.path through pytest.ini's pythonpath); conftest.py holds
only fixtures and is never imported as a module."""
from __future__ import annotations

import argparse

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COMPAT = SHARED / "compat"

requires_shared = pytest.mark.skipif(not COMPAT.is_dir(), reason="../shared/compat is not present")


def write_rgb(path: Path, h: int, w: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """A smooth random RGB image (uint8) written to ``path``."""
    rng = np.random.default_rng(seed)
    base = rng.random((h // 8 + 2, w // 8 + 2, 3))
    img = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
    img = np.clip(img * scale + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return img


def make_cityscapes(root: Path, n: int = 4, h: int = 48, w: int = 64, labels: bool = True) -> Path:
    """``root/leftImg8bit/train/<city>/*_leftImg8bit.png`` (+ gtFine labelIds with road/car/void)."""
    for i in range(n):
        city = f"city{i % 2}"
        stem = f"{city}_{i:06d}_000019"
        write_rgb(root / "leftImg8bit" / "train" / city / f"{stem}_leftImg8bit.png", h, w, seed=i, scale=0.25)
        if labels:
            lab = np.full((h, w), 7, np.uint8)          # road -> 0
            lab[: h // 3] = 23                           # sky -> 10
            lab[h // 2:, w // 2:] = 26                   # car -> 13
            lab[:2] = 0                                  # unlabeled -> 255
            p = root / "gtFine" / "train" / city / f"{stem}_gtFine_labelIds.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(lab).save(p)
    return root


def make_contrast(root: Path, n: int = 3, h: int = 40, w: int = 40) -> Path:
    """``root/GT`` (bright positives) and ``root/low`` (over/under-exposed negatives)."""
    for i in range(n):
        write_rgb(root / "GT" / f"p{i}.png", h, w, seed=100 + i, scale=0.9)
        write_rgb(root / "low" / f"n{i}.png", h, w, seed=200 + i, scale=0.1 if i % 2 else 2.5)
    return root


def make_lol_v1(root: Path, n: int = 4, h: int = 32, w: int = 40, seed: int = 0) -> Path:
    """LOL-v1 split: ``root/low`` and ``root/high`` with identical names; low = 0.2·high."""
    for i in range(n):
        hi = write_rgb(root / "high" / f"{i + 1}.png", h, w, seed=seed + i)
        lo = np.clip(hi.astype(np.float32) * 0.2, 0, 255).astype(np.uint8)
        (root / "low").mkdir(parents=True, exist_ok=True)
        Image.fromarray(lo).save(root / "low" / f"{i + 1}.png")
    return root


def save_as_numpy1(obj, path: Path) -> Path:
    """``torch.save`` whose pickle names numpy scalars as numpy 1.x does (``numpy.core.multiarray.scalar``),
    as in checkpoints saved before numpy 2 (e.g. the public DeepLab port's release files)."""
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(info, data)
    return path


def make_deeplab_checkpoint(path: Path, name: str = "deeplabv3plus_mobilenet", numpy1: bool = True) -> Path:
    """A random DeepLab checkpoint in the public port's real layout: ``cur_itrs``, ``model_state``,
    ``optimizer_state`` (SGD, two groups), ``scheduler_state`` and a ``numpy.float64`` ``best_score``
    (from ``np.nanmean``), pickled under numpy 1.x names unless ``numpy1=False``."""
    from network.modeling import build_segmentation_model

    torch.manual_seed(0)
    net = build_segmentation_model(name, num_classes=19, output_stride=16, pretrained_backbone=False)
    opt = torch.optim.SGD([{"params": net.backbone.parameters(), "lr": 0.01},
                           {"params": net.classifier.parameters(), "lr": 0.1}], lr=0.1, momentum=0.9,
                          weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.PolynomialLR(opt, total_iters=30000, power=0.9)
    best = np.nanmean(np.array([0.7, np.nan, 0.72]))
    obj = {"cur_itrs": 30000, "model_state": net.state_dict(), "optimizer_state": opt.state_dict(),
           "scheduler_state": sched.state_dict(), "best_score": best}
    if numpy1:
        return save_as_numpy1(obj, path)
    torch.save(obj, path)
    return path


def set_golden_weights(model: torch.nn.Module) -> torch.nn.Module:
    """The recipe of ../shared/compat/README.md: every float tensor from a generator seeded by crc32(key)."""
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value  # num_batches_tracked keeps its value
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        if key.endswith("running_var"):
            t = 0.5 + torch.rand(value.shape, generator=g)
        elif key.endswith("running_mean"):
            t = 0.1 * torch.randn(value.shape, generator=g)
        elif value.dim() == 1:
            t = (1.0 if key.endswith("weight") else 0.0) + 0.1 * torch.randn(value.shape, generator=g)
        else:
            t = torch.randn(value.shape, generator=g) * (2.0 / value[0].numel()) ** 0.5
        state[key] = t
    model.load_state_dict(state, strict=True)
    return model


def fit_fixed_batch(model: torch.nn.Module, terms_fn, expected_terms: set[str], steps: int,
                    lr: float = 1e-3) -> list[float]:
    """Adam steps on one fixed batch; ``terms_fn(model)`` returns the loss terms. Returns the totals,
    checking every step that the expected terms are present and the total is finite."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    totals = []
    for _ in range(steps):
        terms = terms_fn(model)
        assert set(terms) == expected_terms
        loss = sum(terms.values())
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    return totals


def random_dce(std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """DCE-Net in eval mode with N(0, std) weights and biases (seeded), for numerical tests."""
    from lowlight_model import enhance_net_nopool

    torch.manual_seed(seed)
    m = enhance_net_nopool().eval()
    for p in m.parameters():
        p.data.normal_(0, std)
    return m


def run_cli_in_process(main, argv: list[str]) -> tuple[int, list[str], str]:
    """Run a command line's ``main(argv)`` as its ``__main__`` block does (through ``utils.errors.run_cli``),
    in this process: ``(exit status, stderr lines without progress bars, stdout)``. An exception other
    than the one-line :class:`~utils.errors.UserError` propagates (a traceback the user would have seen).
    The real-process path (interpreter start-up, ``__main__``) keeps its own subprocess tests."""
    import contextlib
    import io
    import sys

    from utils.errors import run_cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_cli(lambda: sys.exit(main(argv)))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    lines = [line for line in err.getvalue().splitlines() if line.strip() and "%|" not in line]
    return code, lines, out.getvalue()


def make_lol_train_val(root: Path) -> tuple[Path, Path]:
    """``root/our485`` (6 pairs) and ``root/eval15`` (2 pairs), 40x48: a tiny LOL-v1 training run's data."""
    return make_lol_v1(root / "our485", n=6, h=40, w=48), make_lol_v1(root / "eval15", n=2, h=40, w=48, seed=50)


def toy_training(seed: int = 0):
    """A seeded 4-8-1 MLP with its Adam optimiser and halving StepLR: ``(model, optimizer, scheduler)``."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
    return model, opt, sched


def session_args(tmp_path, *argv, **extra) -> argparse.Namespace:
    """The run flags of a stage (``add_run_arguments``) with the few every session reads, for Session tests."""
    from stages.common import add_run_arguments

    p = argparse.ArgumentParser()
    add_run_arguments(p.add_argument_group("run"))
    args = p.parse_args(list(argv))
    for k, v in {"device": "cpu", "random_seed": 0, "num_workers": 0, "lr": 0.1, "arch": "dce", **extra}.items():
        setattr(args, k, v)
    return args


def session_folder(tmp_path):
    """An SCL run folder under ``tmp_path/run``."""
    from stages.common import RunFolder

    return RunFolder("scl", str(tmp_path / "run"), str(tmp_path / "run" / "models"), "latest.pth",
                     ("latest.pth", "Epoch*.pth"))


class FullDisk:
    """A stand-in for ``open`` (patch it into ``utils.fs``) on a device that fills up: a file whose target name
    (see :func:`utils.fs.temp_target`) is in ``full`` gets ``room`` bytes once ``after`` such files were written
    whole, and a write beyond them fails with ``ENOSPC`` after writing what fits, as a real full disk does;
    other files are opened as usual. Each failing file is recorded in ``failed``, with the bytes its target
    held when the write began."""

    def __init__(self, full: set[str], room: int = 4096, after: int = 0) -> None:
        self.full, self.room, self.after, self.failed = full, room, after, []

    def __call__(self, path, mode="r", **kw):
        import builtins
        import os

        from utils.fs import temp_target

        target = temp_target(os.path.basename(str(path))) or os.path.basename(str(path))
        f = builtins.open(path, mode, **kw)
        if target not in self.full or "r" in mode:
            return f
        if self.after > 0:
            self.after -= 1
            return f
        old = os.path.join(os.path.dirname(str(path)), target)
        self.failed.append((old, Path(old).read_bytes() if os.path.isfile(old) else None))
        return _Filling(f, self.room)


class _Filling:
    """A file object whose device has ``room`` bytes left."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        import errno
        import os

        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

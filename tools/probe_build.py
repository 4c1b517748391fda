"""Inputs that several of the probe's cases share, each built once per run (checkpoints, small runs, odd files)."""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import tools.probe_lib as L
from tools.probe_lib import WEIGHTS, enh_args, mem_args, once, scl_args, train


def _need(r, path, what):
    if r.rc or not Path(path).exists():
        raise RuntimeError(f"building {what} for the case failed: exit {r.rc}: {(r.lines or [''])[-1][:120]}")
    return Path(path)


def scl_run():
    """A finished 2-iteration SCL run folder (latest.pth, Epoch*.pth, losses.jsonl)."""
    def make():
        d = L.TMP / "b_scl"
        return _need(train(*scl_args(d, "--total_itrs", "2", "--snapshot_iter", "1")), d / "latest.pth", "an SCL run").parent
    return once("b_scl", make)


def enh_run():
    """A finished 1-epoch DCE enhancer run: returns its run folder (models/model_latest.pth, model_best.pth)."""
    def make():
        save = L.TMP / "b_enh"
        r = train(*enh_args(save, "--nepoch", "1"))
        return _need(r, save / "e" / "models" / "model_latest.pth", "an enhancer run").parents[1]
    return once("b_enh", make)


def mem_run():
    """A finished 1-epoch memory run on the shipped DCE-Net (mem_size 8, pooling 1): its run folder."""
    def make():
        save = L.TMP / "b_mem"
        r = train(*mem_args(save, "--nepoch", "1"))
        return _need(r, save / "m" / "models" / "memory_best.pth", "a memory run").parents[1]
    return once("b_mem", make)


def deeplab():
    def make():
        from helpers import make_deeplab_checkpoint
        return make_deeplab_checkpoint(L.TMP / "ck" / "deeplab.pth")
    (L.TMP / "ck").mkdir(exist_ok=True)
    return once("b_deeplab", make)


def city_labels():
    def make():
        from helpers import make_cityscapes
        return make_cityscapes(L.TMP / "city_labels", n=4)
    return once("b_city_labels", make)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {L.TMP}/PWNED",))


def bad_ckpt(kind):
    """ck/<kind>.pth: text, trunc, evil (torch.save of an object that runs code), resnet (a ResNet-18 state dict)."""
    def make():
        import torch
        ck = L.TMP / "ck"
        ck.mkdir(exist_ok=True)
        p = ck / f"{kind}.pth"
        if kind == "text_hello":
            p.write_text("hello\n")
        elif kind == "hw":
            p.write_text("hello world")
        elif kind == "trunc":
            shutil.copy(WEIGHTS, p)
            p.write_bytes(p.read_bytes()[:3000])
        elif kind == "evil_torchsave":
            torch.save({"x": _Evil()}, p)
        elif kind == "evil_pickle":
            p.write_bytes(pickle.dumps(_Evil()))
        elif kind == "resnet":
            import torchvision
            torch.save(torchvision.models.resnet18().state_dict(), p)
        else:
            raise KeyError(kind)
        return p
    return once("ck_" + kind, make)


def truncated_copy(src, name):
    p = L.TMP / "ck" / name
    p.parent.mkdir(exist_ok=True)
    data = Path(src).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p

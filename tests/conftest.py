"""Shared fixtures only (an empty or fake-weights TORCH_HOME, the SCL data); constants live in helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import make_cityscapes, make_contrast, make_deeplab_checkpoint


@pytest.fixture(autouse=True, scope="session")
def _empty_torch_home(tmp_path_factory):
    """Never use a real cache by accident: TORCH_HOME points at an empty folder unless a test fakes weights."""
    home = tmp_path_factory.mktemp("torch_home_empty")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="session")
def _fake_weights_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("torch_home_fake")
    from tools.random_backbone_weights import write_random_weights

    write_random_weights(str(home / "hub" / "checkpoints"))
    return home


@pytest.fixture
def fake_torch_home(_fake_weights_home, monkeypatch) -> Path:
    """TORCH_HOME holding random VGG16/ResNet-18/AlexNet/MobileNetV2 weights under the real file names."""
    monkeypatch.setenv("TORCH_HOME", str(_fake_weights_home))
    return _fake_weights_home


@pytest.fixture
def scl_data(tmp_path, fake_torch_home):
    """A tiny Cityscapes tree, a Contrast set and a random DeepLab checkpoint: ``(tmp_path, city, contrast, ckpt)``."""
    city = make_cityscapes(tmp_path / "cityscapes")
    contrast = make_contrast(tmp_path / "Contrast")
    ckpt = make_deeplab_checkpoint(tmp_path / "deeplab.pth")
    return tmp_path, city, contrast, ckpt


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Restore the SIGINT/SIGTERM handlers after each test (a training session installs its own)."""
    import signal

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in handlers.items():
        signal.signal(s, h)

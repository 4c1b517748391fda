"""Shared fixtures: the repository root, ../shared (optional), fake ImageNet weights in a temporary TORCH_HOME."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
COMPAT = SHARED / "compat"  # the repository root and tests/ are on sys.path through pytest.ini's pythonpath

requires_shared = pytest.mark.skipif(not COMPAT.is_dir(), reason="../shared/compat is not present")


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


# Tests of older files that took over ~10 s here on 2026-11-22 (13–840 s, the 2 cores shared with other
# jobs): kept out of `make test-fast`. New long tests carry @pytest.mark.slow instead.
SLOW_TESTS = {
    "test_train_emnet.py::test_supervised_loss_decreases_on_a_fixed_batch",
    "test_train_emnet.py::test_emnet_enhancer_trains_and_resumes",
    "test_train_emnet.py::test_enhancer_then_memory_then_paired_evaluation",
    "test_train_scl.py::test_full_loss_decreases_on_a_fixed_batch",
    "test_train_scl.py::test_kill_and_resume_reproduces_the_uninterrupted_losses",
    "test_train_scl.py::test_scl_stage_trains_emnet_without_tv",
    "test_train_scl.py::test_missing_vgg_weights_is_one_line_error",
    "test_train_scl.py::test_train_run_writes_snapshots_logs_and_plot",
    "test_emnet.py::test_padded_forward",
    "test_emnet.py::test_backward_finite_gradients",
    "test_emnet.py::test_golden_output",
    "test_losses.py::test_vgg_losses_match_torchvision",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("/")[-1].split("[")[0] in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)

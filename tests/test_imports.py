"""What inference imports: ``lowlight_test.py`` and ``import metrics`` stay free of torchvision and SciPy, whose
imports cost about 4 s and 0.15 GB of resident memory (part of the 6000x4000 ``--curve_scale 8`` peak,
docs/performance.md), while the lazily imported names still resolve to the real objects."""
import json
import subprocess
import sys

from helpers import ROOT

HEAVY = ("torchvision", "scipy", "skimage", "lpips", "tensorboard", "visdom")


def _modules(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", f"import sys, json\nsys.path.insert(0, {str(ROOT)!r})\n{code}\n"
                          f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.splitlines()[-1])


def test_inference_entry_points_import_no_torchvision_nor_scipy():
    assert _modules("import lowlight_test, inference, lowlight_model, metrics, network") == []


def test_lazy_names_resolve_to_their_modules_objects():
    import metrics
    import network
    from metrics import colour, lpips, segmentation
    from network import modeling

    assert metrics.niqe is sys.modules["metrics.niqe"].niqe and callable(metrics.niqe)
    assert metrics.build_lpips is lpips.build_lpips and metrics.colour_shift is colour.colour_shift
    assert metrics.StreamSegMetrics is segmentation.StreamSegMetrics
    assert network.build_segmentation_model is modeling.build_segmentation_model
    assert set(metrics.__all__) >= {"niqe", "psnr", "ssim", "build_lpips"}
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
    try:
        metrics.no_such_metric
    except AttributeError as e:
        assert "no_such_metric" in str(e)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_star_import_and_using_a_lazy_name_loads_its_module():
    assert _modules("from metrics import *") != []  # * takes every name, LPIPS's torchvision included
    assert "scipy" in _modules("import numpy as np\nfrom metrics import niqe\n"
                               "niqe(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))")

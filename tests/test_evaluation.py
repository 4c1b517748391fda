"""evaluation.py: each method's 8-bit conversion is the reference test script's (issue 22.11)."""
import numpy as np
import pytest
import torch

from evaluation import QUANTISE
from metrics import quantise

#: the reference's conversions of an (H, W, 3) float32 array in [0, 1]: ori truncated, mem np.round (ties
#: to even), the GT-mean oracle np.round as its memory validation
REFERENCE = {"ori": lambda a: (a * 255.0).astype(np.uint8),
             "mem": lambda a: np.round(a * 255.0).astype(np.uint8),
             "gt_mean_oracle": lambda a: np.round(a * 255.0).astype(np.uint8)}


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_each_method_is_converted_as_the_reference(method):
    ties = (torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5]) / 255).view(1, 1, 5).expand(3, 1, 5)
    expected = {"ori": [0, 1, 2, 127, 254], "mem": [0, 2, 2, 128, 254], "gt_mean_oracle": [0, 2, 2, 128, 254]}
    assert quantise(ties, QUANTISE[method])[0, :, 0].tolist() == expected[method]
    torch.manual_seed(0)
    y = torch.rand(3, 6, 5)
    ref = REFERENCE[method](y.numpy().transpose(1, 2, 0))
    assert np.array_equal(quantise(y, QUANTISE[method]), ref)

"""The 8 rotation/flip transforms (dihedral group D4) of Restormer/Uformer/EMNet's ``Augment_RGB_torch``.

Works on any tensor whose last two axes are (H, W): (3,H,W), (N,3,H,W), (H,W)...

=====  ==========================================  =======
mode   transform (reference ``transform<mode>``)    inverse
=====  ==========================================  =======
0      identity                                     0
1      ``rot90(x, k=1, dims=[-1,-2])``              3
2      ``rot90(x, k=2, dims=[-1,-2])``              2
3      ``rot90(x, k=3, dims=[-1,-2])``              1
4      ``x.flip(-2)``                               4
5      ``rot90(x, k=1, dims=[-1,-2]).flip(-2)``     5
6      ``rot90(x, k=2, dims=[-1,-2]).flip(-2)``     6
7      ``rot90(x, k=3, dims=[-1,-2]).flip(-2)``     7
=====  ==========================================  =======

Modes 4..7 are reflections, hence their own inverses. Modes 1, 3, 5, 7 swap H and W.
"""
from __future__ import annotations

import torch

NUM_MODES = 8
INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)


def augment(x: torch.Tensor, mode: int) -> torch.Tensor:
    """Apply transform ``mode`` (0..7, table above) to the last two axes of ``x``."""
    if not 0 <= int(mode) < NUM_MODES:
        raise ValueError(f"augment mode must be in 0..7, got {mode}")
    mode = int(mode)
    k = mode % 4
    y = torch.rot90(x, k=k, dims=[-1, -2]) if k else x
    return y.flip(-2) if mode >= 4 else y


def augment_inverse(x: torch.Tensor, mode: int) -> torch.Tensor:
    """Undo :func:`augment` with the same ``mode``: ``augment_inverse(augment(x, m), m) == x``."""
    if not 0 <= int(mode) < NUM_MODES:
        raise ValueError(f"augment mode must be in 0..7, got {mode}")
    return augment(x, INVERSE[int(mode)])


def random_mode(generator: torch.Generator | None = None) -> int:
    """A uniformly random mode in 0..7 from torch's RNG (seedable, DataLoader-worker safe)."""
    return int(torch.randint(0, NUM_MODES, (1,), generator=generator).item())

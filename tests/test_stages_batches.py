"""stages/batches.py: the resumable batch order, shared between processes."""
from __future__ import annotations

import torch

from stages.batches import epoch_batches


def test_epoch_batches_shares_concatenate_to_the_single_process_batch():
    for n, bs, world in ((10, 2, 2), (11, 2, 2), (13, 3, 3), (7, 4, 2)):
        single = epoch_batches(n - n % world, bs * world, seed=3, epoch=1)
        shares = [epoch_batches(n, bs, seed=3, epoch=1, rank=r, world=world) for r in range(world)]
        assert len({len(s) for s in shares}) == 1                       # the same number of batches everywhere
        joined = [sum((s[j] for s in shares), []) for j in range(len(shares[0]))]
        order = torch.randperm(n, generator=torch.Generator().manual_seed(4)).tolist()[:n - n % world]
        assert sum(joined, []) == order and [len(b) for b in joined] == [len(b) for b in single]

"""EMNet's external memory (SPEC §6): query network, pooled GT values, update/read, refine, checkpoint.

Shapes: images are (N, 3, H, W) floats in [0, 1]; queries are (N, K) with K = 512; values are (N, V)
with V = 3·p² (GT average-pooled to p×p, flattened channel-major: index = c·p² + i·p + j, i.e.
``pooled.reshape(N, -1)``) or V = p² with ``pooling_mean`` (channel mean, index = i·p + j).
:func:`refine` reshapes a value back with the same order. A memory knows its pooling from V alone
(:func:`pooling_for`; p² = 3·q² has no integer solution, so the two forms never collide). Nothing here hard-codes a device: every
function follows the device of its inputs (move the query net and the memory with ``.to(device)``).
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Union

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from network.imagenet import imagenet_normalize
from network.query import REFERENCE_QUERY, check_kind
from utils.checkpoint import read_checkpoint
from utils.errors import UserError
from utils.pretrained import load_pretrained
from utils.training_checkpoint import memory_checkpoint, memory_tensors

#: Guard for ``m_mem / m_out`` in :func:`refine` and :func:`gt_mean_oracle` (see :func:`guard_denominator`).
RATIO_EPS = 1e-8


class QueryNet(torchvision.models.ResNet):
    """ResNet-18 with ``fc = Identity``: (N, 3, H, W) normalised image → (N, 512) pooled features.

    Frozen and always in eval mode: :meth:`train` ignores ``mode`` so a parent's ``.train()`` cannot
    switch its BatchNorm layers to batch statistics. State-dict keys are torchvision's (minus ``fc``).
    """

    def __init__(self) -> None:
        super().__init__(torchvision.models.resnet.BasicBlock, [2, 2, 2, 2])
        self.fc = nn.Identity()

    def train(self, mode: bool = True) -> "QueryNet":
        return super().train(False)


def build_query_net(pretrained: bool = True) -> QueryNet:
    """The frozen query network (SPEC §6).

    ``pretrained=True`` loads ``ResNet18_Weights.IMAGENET1K_V1`` from the torch cache (UserError naming
    ``resnet18-f37072fd.pth`` and its folder when missing); ``pretrained=False`` keeps torchvision's
    random initialisation (seed it yourself), for tests only.
    """
    net = QueryNet()
    if pretrained:
        src = load_pretrained(torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
        state = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
        net.load_state_dict(state, strict=True)
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net.eval()


@torch.no_grad()
def query(net: nn.Module, low: torch.Tensor) -> torch.Tensor:
    """Memory query of low-light images: (N, 3, H, W) in [0, 1] → L2-normalised (N, K), full resolution
    (K = 512 for the ResNet-18 :class:`QueryNet`, which sees ImageNet-normalised input; other query networks,
    :mod:`network.query`, see the image as it is)."""
    x = imagenet_normalize(low) if getattr(net, "imagenet_input", True) else low
    return F.normalize(net(x).flatten(1), dim=1)


def value_dim_for(p: int, pooling_mean: bool = False) -> int:
    """V for pooling size p: 3·p², or p² with ``pooling_mean``."""
    return p * p if pooling_mean else 3 * p * p


def pooling_for(value_dim: int) -> Optional[tuple[int, bool]]:
    """(p, pooling_mean) whose values have size ``value_dim`` (3·p² → (p, False), p² → (p, True)), or None."""
    q = math.isqrt(value_dim // 3) if value_dim % 3 == 0 else 0
    if q > 0 and 3 * q * q == value_dim:
        return q, False
    r = math.isqrt(value_dim) if value_dim > 0 else 0
    return (r, True) if r > 0 and r * r == value_dim else None


def _pool(x: torch.Tensor, p: int, pooling_mean: bool) -> torch.Tensor:
    """(N, 3, H, W) → (N, C, p, p) adaptive average pool, C = 1 (channel mean first) or 3."""
    if pooling_mean:
        x = x.mean(dim=1, keepdim=True)
    return F.adaptive_avg_pool2d(x, p)


def pool_value(gt: torch.Tensor, p: int, pooling_mean: bool = False) -> torch.Tensor:
    """Memory value of GT images: (N, 3, H, W) → (N, 3·p²) channel-major, or (N, p²) with pooling_mean."""
    return _pool(gt, p, pooling_mean).reshape(gt.shape[0], -1)


class ExternalMemory(nn.Module):
    """Key/value memory with ages (SPEC §6). Buffers (saved in ``state_dict`` and moved by ``.to``):

    * ``key`` (M, K) float, rows L2-normalised; ``value`` (M, V) float; ``age`` (M,) float;
    * ``top_index`` (M,) long: dataset index of the sample that wrote the slot (−1 = never written).

    The value size V fixes the pooling: ``pooling_size`` p and ``pooling_mean`` (V = 3·p², or p² for
    channel means); :meth:`value_of`, :meth:`refine` and :meth:`oracle` use them, so callers never pass
    them again.

    ``generator`` (optional ``torch.Generator``) drives the initialisation and the age noise, for
    reproducible runs; it may live on another device than the buffers (numbers are moved over).
    ``query_kind`` names the query network the keys come from (:mod:`network.query`; saved with the
    memory when it is not the reference's ResNet-18).
    """

    key: torch.Tensor
    value: torch.Tensor
    age: torch.Tensor
    top_index: torch.Tensor

    def __init__(self, mem_size: int = 9000, key_dim: int = 512, value_dim: int = 3, thres: float = 1e-5,
                 age_noise: float = 4.0, generator: Optional[torch.Generator] = None,
                 query_kind: str = REFERENCE_QUERY) -> None:
        super().__init__()
        self.query_kind = check_kind(query_kind, "ExternalMemory")
        pooling = pooling_for(int(value_dim))
        if pooling is None:
            raise ValueError(f"value size {value_dim} is neither 3·p² nor p² for an integer pooling size p")
        self.mem_size, self.key_dim, self.value_dim = int(mem_size), int(key_dim), int(value_dim)
        self.pooling_size, self.pooling_mean = pooling
        self.thres, self.age_noise = float(thres), float(age_noise)
        self.generator = generator
        key = self._rand(mem_size, key_dim) * 0.02 - 0.01  # uniform(-0.01, 0.01)
        self.register_buffer("key", F.normalize(key, dim=1))
        self.register_buffer("value", self._rand(mem_size, value_dim))  # uniform(0, 1)
        self.register_buffer("age", torch.zeros(mem_size))
        self.register_buffer("top_index", torch.full((mem_size,), -1, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"mem_size={self.mem_size}, key_dim={self.key_dim}, value_dim={self.value_dim} "
                f"(pooling_size={self.pooling_size}, pooling_mean={self.pooling_mean}), thres={self.thres:g}, "
                f"age_noise={self.age_noise:g}")

    def _rand(self, *shape: int, device: Optional[torch.device] = None) -> torch.Tensor:
        """uniform[0, 1) numbers from ``self.generator`` (or the global RNG) on ``device`` (default CPU)."""
        g = self.generator
        out = torch.rand(*shape, generator=g, device=g.device if g is not None else device)
        return out if device is None else out.to(device)

    def scores(self, q: torch.Tensor) -> torch.Tensor:
        """Cosine scores (N, M) of L2-normalised queries (N, K) against the keys."""
        return q.to(self.key.dtype) @ self.key.t()

    def nearest(self, q: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k (scores, slot indices), each (N, k), best first."""
        return torch.topk(self.scores(q), k, dim=1)

    @torch.no_grad()
    def update(self, q: torch.Tensor, v: torch.Tensor, index: torch.Tensor) -> dict[str, int]:
        """One training update with queries q (B, K), GT values v (B, V), dataset indices ``index`` (B,).

        As the reference (SPEC §6): top-1 slot per query by cosine score; colour distance =
        mean_V |value[top1] − v|; every age += 1; a query with distance < ``thres`` *matches*:
        key[slot] ← L2-normalise(key[slot] + q), age[slot] ← 0 (value unchanged); the other queries
        *miss* and are written, in batch order, to the slots with the largest age + uniform(−noise, noise):
        key ← q, value ← v, top_index ← index, age ← 0. Matches are applied before misses, so a miss can
        overwrite a slot that was just merged, as in the reference.

        Our resolution of two reference ambiguities:

        * several misses in one batch go to *distinct* slots (one ``topk`` over the noisy ages of all M
          slots; the first miss gets the oldest one) — what the reference's ``topk`` does too;
        * several matches landing on the *same* slot are all merged: key[slot] ← normalise(key[slot] +
          Σ q) (a one-hot matmul, deterministic). The reference's indexed assignment keeps only one of them
          (which one is unspecified on GPU); with one match per slot both are identical.

        Returns counts ``{"matched": …, "written": …}``.
        """
        if q.shape[0] != v.shape[0] or v.shape[1] != self.value_dim or q.shape[1] != self.key_dim:
            raise ValueError(f"update expects q (B, {self.key_dim}) and v (B, {self.value_dim}), "
                             f"got {tuple(q.shape)} and {tuple(v.shape)}")
        dev = self.key.device
        q = q.to(device=dev, dtype=self.key.dtype)
        v = v.to(device=dev, dtype=self.value.dtype)
        index = torch.as_tensor(index, device=dev).long().reshape(-1)
        top1 = self.nearest(q, 1)[1][:, 0]                                # (B,)
        dist = (self.value[top1] - v).abs().mean(dim=1)                   # (B,)
        match = dist < self.thres
        self.age += 1.0
        if match.any():
            slots = top1[match]
            uniq, inv = torch.unique(slots, return_inverse=True)           # sorted distinct slots
            onehot = F.one_hot(inv, uniq.numel()).t().to(q.dtype)           # (U, B_match)
            summed = onehot @ q[match]                                       # Σ q per slot, deterministic
            self.key[uniq] = F.normalize(self.key[uniq] + summed, dim=1)
            self.age[uniq] = 0.0
        miss = ~match
        n_miss = int(miss.sum())
        if n_miss:
            if n_miss > self.mem_size:
                raise ValueError(f"{n_miss} new entries in one batch exceed the memory size {self.mem_size}")
            noise = (self._rand(self.mem_size, device=dev) * 2.0 - 1.0) * self.age_noise
            old = torch.topk(self.age + noise, n_miss, dim=0).indices       # distinct slots, oldest first
            self.key[old] = q[miss]
            self.value[old] = v[miss]
            self.top_index[old] = index[miss]
            self.age[old] = 0.0
        return {"matched": int(match.sum()), "written": n_miss}

    @torch.no_grad()
    def read(self, q: torch.Tensor, top_k: int = 1) -> torch.Tensor:
        """Values for queries q (N, K) → (N, V): the top-1 slot's value (reference, testing top-k 1).

        ``top_k > 1`` returns the plain mean of the k best slots' values — our extension, not in the
        reference (whose test script always uses top-k 1).
        """
        idx = self.nearest(q, top_k)[1]                                   # (N, k)
        return self.value[idx].mean(dim=1)

    def value_of(self, gt: torch.Tensor) -> torch.Tensor:
        """Memory values of GT images (N, 3, H, W) → (N, V), with this memory's pooling."""
        return pool_value(gt, self.pooling_size, self.pooling_mean)

    def refine(self, r: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Refined output (N, 3, H, W) in [0, 1] of the raw enhancer output ``r`` (unclamped) with values
        (N, V), e.g. from :meth:`read`; see :func:`refine`."""
        return refine(r, values, self.pooling_size, self.pooling_mean)

    def oracle(self, r: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The GT-mean oracle of the raw output ``r`` with this memory's pooling; see :func:`gt_mean_oracle`."""
        return gt_mean_oracle(r, gt, self.pooling_size, self.pooling_mean)

    def to_checkpoint(self, epoch: int) -> dict[str, Any]:
        """The reference checkpoint dict (CPU tensors): keys exactly
        :data:`utils.training_checkpoint.MEMORY_KEYS`."""
        ck = memory_checkpoint(epoch, self.key, self.value, self.age, self.top_index)
        if self.query_kind != REFERENCE_QUERY:
            ck["query"] = self.query_kind
        return ck

    @classmethod
    def from_checkpoint(cls, path_or_dict: Union[str, os.PathLike, Mapping[str, Any]], map_location="cpu",
                        pooling: Optional[int] = None, pooling_mean: Optional[bool] = None,
                        value_dim: Optional[int] = None, mem_size: Optional[int] = None, name: Optional[str] = None,
                        **kw: Any) -> "ExternalMemory":
        """Load a memory saved in the reference format (ours or the original release's).

        M, K, V — and from V the pooling size and mode — come from the tensors. ``pooling``,
        ``pooling_mean``, ``value_dim``, ``mem_size`` are optional expectations: each one given is checked and
        a mismatch is a :class:`UserError`, as is a file that is not a memory checkpoint (the message names
        the file and the missing keys). Other ``kw`` (``thres``, ``age_noise``, ``generator``) go to the
        constructor. Buffers are placed on ``map_location``; ``name`` labels a dict in error messages.
        """
        if isinstance(path_or_dict, Mapping):
            obj, name = path_or_dict, name or "<memory checkpoint dict>"
        else:
            name = os.fspath(path_or_dict)
            obj = read_checkpoint(name, map_location=map_location)
        key, value, age, top = memory_tensors(obj, name)
        m, k, v = key.shape[0], key.shape[1], value.shape[1]
        found = pooling_for(v)
        if found is None:
            raise UserError(f"{name} stores values of size {v}, which no pooling size gives (3·p² or p²); "
                            f"is it an EMNet memory checkpoint?")
        p, mean = found
        want = {"pooling size": (pooling, p), "pooling_mean": (pooling_mean, mean), "value size": (value_dim, v)}
        for what, (expected, got) in want.items():
            if expected is not None and expected != got:
                raise UserError(f"{name} stores values of size {v} (pooling size {p}"
                                f"{', channel means' if mean else ''}), but {what} {expected} was requested; "
                                f"drop --pooling_size/--pooling_mean/--V_feat_dim (the memory knows them) or "
                                f"set them to match")
        if mem_size is not None and mem_size != m:
            raise UserError(f"--mem_size {mem_size} does not match {name}, which holds {m} slots; pass --mem_size {m} "
                            f"or leave it out")
        mem = cls(mem_size=m, key_dim=k, value_dim=v, query_kind=check_kind(obj.get("query", REFERENCE_QUERY), name),
                  **kw)
        dev = map_location if isinstance(map_location, (str, torch.device)) else key.device
        with torch.no_grad():
            mem.key = key.to(device=dev, dtype=torch.float32)
            mem.value = value.to(device=dev, dtype=torch.float32)
            mem.age = age.to(device=dev, dtype=torch.float32)
            mem.top_index = top.to(device=dev).long()
        return mem


def guard_denominator(m: torch.Tensor, eps: float = RATIO_EPS) -> torch.Tensor:
    """``m`` with every entry of magnitude below ``eps`` replaced by ``±eps``, keeping its sign.

    Only |m| < eps changes, so wherever |m| >= eps (every normal image, and the negative pooled mean an
    unclamped EMNet output can have) dividing by the result is bit-identical to the reference's unguarded
    division, sign included. Exactly 0 (and -0.0) becomes ``+eps``: the reference divides by zero there
    (inf or NaN); here an all-black cell gets a finite ratio and, as y is 0 there, an output of 0.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    tiny = torch.full_like(m, eps).masked_fill_(m < 0, -eps)
    return torch.where(m.abs() < eps, tiny, m)


def refine(r: torch.Tensor, m_mem: torch.Tensor, p: int, pooling_mean: bool = False) -> torch.Tensor:
    """Memory refinement (SPEC §6), generalised to any p.

    r: (N, 3, H, W) raw enhancer output (not clamped); m_mem: (N, V) memory values.
    y = clamp(r, 0, 1); m_mem → (N, C, p, p) (C = 3, or 1 with pooling_mean); m_out = pool_p(r) — the
    *unclamped* output, as the reference (channel mean first with pooling_mean); ratio = m_mem /
    guard_denominator(m_out) (sign kept); (w_out, w_mem) = softmax over the pair (m_out, m_mem) element-wise;
    scale = w_out + w_mem · ratio; returns clamp(y · nearest_upsample(scale, H×W), 0, 1), shape (N, 3, H, W).
    For p = 1 this is exactly the reference. When p does not divide H (or W) the nearest-upsampled cells
    are not exactly the adaptive pooling windows (they differ by at most one row/column at cell borders).
    """
    n, _, h, w = r.shape
    c = 1 if pooling_mean else 3
    if m_mem.numel() != n * c * p * p:
        raise ValueError(f"memory values {tuple(m_mem.shape)} do not fit pooling size {p} "
                         f"(expected (N, {c * p * p}))")
    m_mem = m_mem.reshape(n, c, p, p).to(r.dtype)
    m_out = _pool(r, p, pooling_mean)
    ratio = m_mem / guard_denominator(m_out)
    w_out, w_mem = torch.softmax(torch.stack([m_out, m_mem], dim=0), dim=0)
    scale = w_out + w_mem * ratio
    return torch.clamp(r.clamp(0, 1) * F.interpolate(scale, size=(h, w), mode="nearest"), 0.0, 1.0)


def gt_mean_oracle(r: torch.Tensor, gt: torch.Tensor, p: int = 1, pooling_mean: bool = False) -> torch.Tensor:
    """The "GT-mean" oracle: clamp(clamp(r, 0, 1) · nearest_upsample(pool_p(GT) / pool_p(r)), 0, 1).

    r: (N, 3, H, W) raw enhancer output — pooled unclamped, as the reference —, gt (N, 3, H, W) in [0, 1];
    per channel (or on the channel mean with pooling_mean), denominator through
    :func:`guard_denominator` (sign kept). Results with it are not comparable with plain ones (SPEC §7).
    """
    ratio = _pool(gt, p, pooling_mean).to(r.dtype) / guard_denominator(_pool(r, p, pooling_mean))
    return torch.clamp(r.clamp(0, 1) * F.interpolate(ratio, size=r.shape[-2:], mode="nearest"), 0.0, 1.0)

"""SCL-LLE's losses (losses.zero_dce, losses.scl, losses.vgg, losses.objectives, and Myloss, their reference-name
re-export): hand-computed values, the reference's golden vectors, VGG sharing, segmentation."""
import math
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

import losses
import losses.vgg
import Myloss
from Myloss import (L_TV, L_con, L_color, L_exp, L_segexp, L_spa, PerceptualLoss, SegmentationLoss, VGGFeatures,
                    contrastive_loss, feature_contrastive_loss, get_vgg_features, perception_loss)
from helpers import COMPAT, requires_shared
from utils.errors import UserError

VGG_FILE = "vgg16-397923af.pth"


def close(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64),
                               rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------ hand-computed values
def test_tv_hand():
    A = torch.tensor([[1.0, 2.0, 4.0], [0.0, 3.0, 3.0]]).view(1, 1, 2, 3)
    # vertical: 1+1+1 = 3 over (2-1)*3 = 3 -> 1; horizontal: 1+4+9+0 = 14 over 2*(3-1) = 4 -> 3.5; 2*(4.5)/1
    close(L_TV()(A), 9.0)
    close(L_TV(TVLoss_weight=0.5)(A), 4.5)
    close(L_TV()(torch.cat([A, torch.zeros_like(A)])), 9.0 / 2)  # divided by the batch size


def test_color_hand():
    x = torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[0.3, 0.3], [0.3, 0.3]], [[0.0, 0.2], [0.0, 0.2]]]).view(1, 3, 2, 2)
    out = L_color()(torch.cat([x, torch.full_like(x, 0.5)]))
    assert out.shape == (2, 1, 1, 1)
    # means r 0.5, g 0.3, b 0.1
    close(out[0, 0, 0, 0], math.sqrt(0.2 ** 4 + 0.4 ** 4 + (0.1 - 0.3) ** 4))
    close(out[1, 0, 0, 0], 0.0)


def test_con_and_contrastive_hand():
    E = torch.tensor([0.3, 0.9, 0.0, 0.0, 0.0, 0.0]).view(1, 3, 1, 2)  # channel means per pixel 0.1, 0.3
    P = torch.tensor([0.0, 0.0, 0.6, 0.6, 0.0, 0.0]).view(1, 3, 1, 2)  # 0.2, 0.2
    Q = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.5, 1.5]).view(1, 3, 1, 2)  # 0.5, 0.5
    close(L_con()(E, P), (0.1 + 0.1) / 2)
    close(L_con()(E, Q), (0.4 + 0.2) / 2)
    close(contrastive_loss(E, P, Q), 0.1 - 0.3 + 0.3)
    close(contrastive_loss(E, Q, P), max(0.3 - 0.1 + 0.3, 0.0))
    close(contrastive_loss(E, P, Q, margin=0.1), 0.0)  # clamped


def _spa_loop(org, enh):
    """Zero-DCE spatial consistency with explicit loops: pooled channel means, zero outside the map."""
    n, c, h, w = org.shape
    ph, pw = h // 4, w // 4
    out = torch.zeros(n, 1, ph, pw, dtype=torch.float64)
    for b in range(n):
        def pooled(t):
            return [[sum(float(t[b, ch, 4 * i + u, 4 * j + v]) for ch in range(c) for u in range(4) for v in range(4))
                     / (16 * c) for j in range(pw)] for i in range(ph)]
        po, pe = pooled(org), pooled(enh)

        def at(p, i, j):
            return p[i][j] if 0 <= i < ph and 0 <= j < pw else 0.0
        for i in range(ph):
            for j in range(pw):
                out[b, 0, i, j] = sum(((at(po, i, j) - at(po, i + di, j + dj)) - (at(pe, i, j) - at(pe, i + di, j + dj))) ** 2
                                      for di, dj in ((0, -1), (0, 1), (-1, 0), (1, 0)))
    return out


def test_spa_hand():
    org = torch.ones(1, 3, 8, 8)
    org[:, 0, :4, :4] = torch.tensor([[0.0, 2.0] * 2, [2.0, 0.0] * 2] * 2)  # top-left block mean 1, rest mean 1
    org[:, :, 4:, :] = 0
    org[:, :, :, 4:] = 0
    # pooled org [[1,0],[0,0]], enhanced all 0: E(0,0) = 4 neighbours x 1, E(0,1) = E(1,0) = 1, E(1,1) = 0
    out = L_spa()(org, torch.zeros_like(org))
    assert out.shape == (1, 1, 2, 2)
    close(out, torch.tensor([[[[4.0, 1.0], [1.0, 0.0]]]]))
    torch.manual_seed(0)
    o, e = torch.rand(2, 3, 13, 17), torch.rand(2, 3, 13, 17)
    close(L_spa()(o, e), _spa_loop(o, e))
    assert L_spa()(o.double(), e.double()).dtype == torch.float64  # follows the input


def test_exp_hand():
    x = torch.zeros(1, 3, 5, 5)
    for (i, j), m in {(0, 0): 0.6, (0, 1): 0.8, (1, 0): 0.2, (1, 1): 1.0}.items():
        x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = m
    x[:, 0, :2, :2] += torch.tensor([[0.3, -0.3], [0.3, -0.3]])  # channel mean unchanged on average
    x[:, :, 4, :] = 9.0  # the incomplete last row / column are dropped by the pooling
    x[:, :, :, 4] = 9.0
    # SCL-LLE: patch means 0.6, 0.8, 0.2, 1.0 clamped to [0, .55] and to [.55, 1], each against 0.6
    low = (0.05 ** 2 + 0.05 ** 2 + 0.4 ** 2 + 0.05 ** 2) / 4
    high = (0.0 + 0.2 ** 2 + 0.05 ** 2 + 0.4 ** 2) / 4
    close(L_exp(2, 0.6)(x), low + high)
    close(L_exp(2, 0.6, variant="zero_dce")(x), (0.0 + 0.2 ** 2 + 0.4 ** 2 + 0.4 ** 2) / 4)


def test_exp_variants_differ_by_a_constant():
    """Each patch mean falls in one unclamped term; the other is (0.55 - level)^2: same gradients."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    for level in (0.6, 0.4):
        scl, zd = L_exp(4, level)(x), L_exp(4, level, variant="zero_dce")(x)
        close(scl, zd + (0.55 - level) ** 2, rtol=1e-6, atol=1e-7)
        g_scl, = torch.autograd.grad(scl, x)
        g_zd, = torch.autograd.grad(zd, x)
        close(g_scl, g_zd, rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError):
        L_exp(4, 0.6, variant="zerodce")


def _segexp_reference_loop(x, y, classes=35):
    """The reference L_segexp written with loops: labels of image q applied to brightness of image p."""
    n, c, h, w = x.shape
    xm = [[[sum(float(x[p, ch, i, j]) for ch in range(c)) / c for j in range(w)] for i in range(h)] for p in range(n)]
    total = 0.0
    for cls in range(classes):
        a = [xm[p][i][j] if int(y[q, i, j]) == cls else 0.0
             for p in range(n) for q in range(n) for i in range(h) for j in range(w)]
        d = sum(a) / len(a)
        a = [d if v == 0 else v for v in a]
        total += sum((v - d) ** 2 for v in a) / len(a)
    return total


def _segexp_per_image_loop(x, y, ignore=255):
    n, c, h, w = x.shape
    total = 0.0
    for p in range(n):
        xm = {(i, j): sum(float(x[p, ch, i, j]) for ch in range(c)) / c for i in range(h) for j in range(w)}
        for cls in {int(v) for v in y[p].flatten()} - {ignore}:
            region = [xm[k] for k in xm if int(y[p, k[0], k[1]]) == cls]
            mu = sum(region) / len(region)
            total += sum((v - mu) ** 2 for v in region)
    return total / (n * h * w)


def test_segexp_reference_hand():
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(2, 1, 1, 2).repeat(1, 3, 1, 1)
    y = torch.tensor([[[0, 1]], [[1, 255]]])
    # class 0: a = {0.2, 0.6, 6 zeros}, d = 0.1, (0.01 + 0.25) / 8
    # class 1: a = {0.4, 0.8, 0.2, 0.6, 4 zeros}, d = 0.25, (0.0225 + 0.3025 + 0.0025 + 0.1225) / 8
    close(L_segexp()(x, y), 0.26 / 8 + 0.45 / 8)
    close(L_segexp(per_image=True)(x, y), 0.0)  # every class region of its own image is one pixel


def test_segexp_reference_gradient_treats_class_mean_as_constant():
    """The reference subtracts d = mean(a) as torch.FloatTensor([d]): hand-computed gradient (issue 6.5)."""
    x = torch.tensor([0.2, 0.4, 0.6, 0.8]).view(2, 1, 1, 2).repeat(1, 3, 1, 1).requires_grad_(True)
    y = torch.tensor([[[0, 1]], [[1, 255]]])
    L_segexp()(x, y).backward()
    # d/dx̄ of Σ_i mean((a_i − d_i)²) over 8 entries with d_i constant: 2(a − d)/8 per non-zero entry.
    # class 0 (d 0.1): x̄00 0.2 → 0.025, x̄10 0.6 → 0.125; class 1 (d 0.25): x̄01 0.4 → 0.0375,
    # x̄11 0.8 → 0.1375, x̄00 0.2 → −0.0125, x̄10 0.6 → 0.0875; each channel gets 1/3 (channel mean)
    grad_mean = torch.tensor([[0.0125, 0.0375], [0.2125, 0.1375]]).view(2, 1, 1, 2)
    close(x.grad, (grad_mean / 3).expand(2, 3, 1, 2))
    # the same as the reference's construct on a random batch, where the gradient through d would differ
    torch.manual_seed(3)
    x = torch.rand(2, 3, 6, 5, requires_grad=True)
    y = torch.tensor([0, 1, 2, 255])[torch.randint(0, 4, (2, 6, 5))]
    L_segexp()(x, y).backward()
    ours, x.grad = x.grad, None
    xm, zeros, ref = x.mean(dim=1, keepdim=True), torch.zeros(2, 6, 5), 0.0
    for i in range(35):
        a = torch.where(y == i, xm, zeros)
        d = torch.mean(a)
        a = torch.where(a == 0, d, a)
        ref = ref + torch.mean((a - torch.tensor([d.item()])) ** 2)  # torch.FloatTensor([d2]) in the reference
    ref.backward()
    close(ours, x.grad)


def test_segexp_per_image_hand_and_loop():
    x = torch.tensor([0.2, 0.4, 0.6, 0.6, 0.8, 1.0]).view(2, 1, 1, 3).repeat(1, 3, 1, 1)
    y = torch.tensor([[[0, 1, 1]], [[1, 255, 1]]])
    # image 0: class 1 = {0.4, 0.6}, SS 0.02; image 1: class 1 = {0.6, 1.0}, SS 0.08; / (2*1*3)
    close(L_segexp(per_image=True)(x, y), 0.1 / 6)
    close(L_segexp()(x, y), _segexp_reference_loop(x, y))
    torch.manual_seed(1)
    x = torch.rand(2, 3, 5, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 255])[torch.randint(0, 4, (2, 5, 6))]
    y[1, 0] = 7  # a class present in one image only
    per = L_segexp(per_image=True)(x, y)
    ref = L_segexp()(x, y)
    close(per, _segexp_per_image_loop(x.detach(), y))
    close(ref, _segexp_reference_loop(x.detach(), y))
    assert abs(per.item() - ref.item()) > 1e-3
    per.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# -------------------------------------------------------------------------------------- golden vectors
@requires_shared
def test_golden_vectors():
    g = torch.load(os.path.join(COMPAT, "golden_vectors.pt"))["losses"]
    A, E, P, Q, y = g["A"], g["E"], g["P"], g["Q"], g["y"]
    contrastive_key = next(k for k in g if k.startswith("contrastive"))
    close(L_TV()(A), g["L_TV(A)"])
    out = L_color()(E)
    assert out.shape == g["L_color(E)"].shape
    close(out, g["L_color(E)"])
    close(L_con()(E, P), g["L_con(E,P)"])
    close(L_segexp()(E, y), g["L_segexp(E,y)"])
    close(contrastive_loss(E, P, Q), g[contrastive_key])
    out = L_spa()(Q, E)
    assert out.shape == g["L_spa(Q,E)"].shape
    close(out, g["L_spa(Q,E)"])
    # the corrected variant differs from the reference here (different labels per image)
    per = L_segexp(per_image=True)(E, y)
    assert abs(float(per) - float(g["L_segexp(E,y)"])) > 1e-3


@requires_shared
def test_golden_exp():
    """The golden value is SCL-LLE's clamped two-term L_exp (Zero-DCE's formula is 0.05² lower there)."""
    g = torch.load(os.path.join(COMPAT, "golden_vectors.pt"))["losses"]
    close(L_exp(16, 0.6)(g["E"]), g["L_exp16_0.6(E)"], rtol=1e-6, atol=1e-9)
    pooled = F.avg_pool2d(g["E"].mean(dim=1, keepdim=True), 16)
    assert float(pooled.max()) < 0.55
    close(L_exp(16, 0.6, variant="zero_dce")(g["E"]) + 0.05 ** 2, g["L_exp16_0.6(E)"], rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------------- VGG
def _torchvision_vgg(home):
    m = tvm.vgg16()
    m.load_state_dict(torch.load(home / "hub" / "checkpoints" / VGG_FILE))
    return m.eval()


def _gram_loop(f):
    n, c, h, w = f.shape
    g = torch.zeros(n, c, c, dtype=torch.float64)
    for b in range(n):
        fb = f[b].double()
        for i in range(c):
            g[b, i] = (fb[i:i + 1] * fb).sum(dim=(1, 2)) / (c * h * w)
    return g


def test_vgg_missing_weights():
    for make in (get_vgg_features, perception_loss, PerceptualLoss):
        with pytest.raises(UserError, match=VGG_FILE) as e:
            make()
        assert os.path.join("hub", "checkpoints") in str(e.value)


def test_vgg_loaded_once_shared_frozen_and_moved_by_to(fake_torch_home, monkeypatch):
    """SCLLoss loads VGG16 once and shares it; it is a registered (frozen) submodule, so ``.to()`` moves
    it — no module-level cache hides it (issue 7.6)."""
    from losses import SCLLoss

    calls = []
    real = losses.vgg.load_pretrained
    monkeypatch.setattr(losses.vgg, "load_pretrained", lambda *a, **k: calls.append(1) or real(*a, **k))
    crit = SCLLoss({"feat": 5.0, "percep": 1.0}, device=torch.device("cpu"))
    assert len(calls) == 1
    assert crit.gram.vgg is crit.percep.vgg is crit.vgg
    shared = VGGFeatures(_torchvision_vgg(fake_torch_home))
    assert perception_loss(vgg=shared).vgg is shared and PerceptualLoss(shared).vgg is shared
    assert len(calls) == 1
    crit.train(), crit.vgg.train()
    assert not crit.vgg.training and all(not p.requires_grad for p in crit.parameters())
    crit.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in crit.vgg.parameters())
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert torch.isfinite(sum(crit(x, x, None, None, x, x).values()))


def test_vgg_takes_its_device_from_the_caller():
    """VGGFeatures never moves itself to the input's device (it used to, silently)."""
    vgg = VGGFeatures(tvm.vgg16())
    vgg(torch.empty(1, 3, 8, 8, device="meta"))  # shape-only inputs: a self-moving module would end on "meta"
    assert all(p.device.type == "cpu" for p in vgg.parameters())


@pytest.mark.slow
def test_vgg_losses_match_torchvision(fake_torch_home):
    torch.manual_seed(2)
    I, E, P, Q = torch.rand(4, 2, 3, 32, 32).unbind(0)
    m = _torchvision_vgg(fake_torch_home)
    with torch.no_grad():
        close(perception_loss()(I, E), F.mse_loss(m.features[:23](I), m.features[:23](E)), rtol=1e-4)
        expected = 0.0
        for end in (4, 9):
            expected += ((_gram_loop(m.features[:end](P)) - _gram_loop(m.features[:end](E))) ** 2).sum()
        g_ep = PerceptualLoss()(E, P)
        close(g_ep, expected, rtol=1e-4, atol=1e-9)
        g_eq = PerceptualLoss()(E, Q)
        close(feature_contrastive_loss(E, P, Q), max(float(g_ep) - float(g_eq) + 0.04, 0.0), rtol=1e-4)
        close(feature_contrastive_loss(E, P, Q, margin=-1.0), 0.0)


def test_vgg_fast_path_matches_separate_calls(fake_torch_home):
    torch.manual_seed(3)
    I, P, Q = torch.rand(3, 2, 3, 24, 24).unbind(0)
    E1 = torch.rand(2, 3, 24, 24, requires_grad=True)
    E2 = E1.detach().clone().requires_grad_(True)
    vgg = get_vgg_features()
    calls = []
    hook = vgg.register_forward_pre_hook(lambda *_: calls.append(1))
    per, gram = perception_loss(vgg), PerceptualLoss(vgg)
    slow = per(I, E1) + feature_contrastive_loss(E1, P, Q, gram_loss=gram)
    assert len(calls) == 5  # I, E for perception_loss; E once, P, Q inside feature_contrastive_loss
    calls.clear()
    fE = vgg(E2)
    assert set(fE) == {"relu1_2", "relu2_2", "relu4_3"}
    with torch.no_grad():
        fI, fP, fQ = vgg(I), vgg(P, last="relu2_2"), vgg(Q, last="relu2_2")
    fast = per(fI, fE) + feature_contrastive_loss(fE, fP, fQ, gram_loss=gram)
    assert len(calls) == 4
    hook.remove()
    close(fast, slow, rtol=1e-5)
    slow.backward()
    fast.backward()
    close(E2.grad, E1.grad, rtol=1e-4, atol=1e-8)


def test_contrast_gram_cache_gives_the_same_losses_and_skips_the_pq_passes(fake_torch_home):
    """SCLLoss(contrast_ids=...): the first step computes P/Q Grams once (one pass for the missing images),
    a later step with the same images runs VGG on E and I only, and every loss and gradient equals the
    uncached path."""
    from losses import SCLLoss

    torch.manual_seed(5)
    pool = {("P", k): torch.rand(3, 24, 24) for k in range(3)} | {("Q", k): torch.rand(3, 24, 24) for k in range(3)}
    crit = SCLLoss({"feat": 5, "percep": 1})
    calls = []
    hook = crit.vgg.register_forward_pre_hook(lambda _m, inp: calls.append(inp[0].shape[0]))
    steps = (([("P", 0), ("P", 1), ("Q", 2), ("Q", 0)], [2, 4, 2]),  # E, the 4 new P/Q images, I
             ([("P", 1), ("P", 2), ("Q", 0), ("Q", 2)], [2, 1, 2]))  # only P2 is new
    for ids, expected_calls in steps:
        P, Q = torch.stack([pool[k] for k in ids[:2]]), torch.stack([pool[k] for k in ids[2:]])
        I, E0 = torch.rand(2, 2, 3, 24, 24).unbind(0)
        E1, E2 = E0.clone().requires_grad_(True), E0.clone().requires_grad_(True)
        calls.clear()
        cached = crit(I, E1, None, None, P, Q, contrast_ids=ids)
        seen = list(calls)
        plain = crit(I, E2, None, None, P, Q)
        for k in plain:
            close(cached[k], plain[k], rtol=1e-6)
        sum(cached.values()).backward()
        sum(plain.values()).backward()
        close(E1.grad, E2.grad, rtol=1e-5, atol=1e-9)
        assert seen == expected_calls
    hook.remove()
    assert len(crit.gram_cache) == 5 and crit.gram_cache[("P", 0)]["relu2_2"].shape == (128, 128)
    with pytest.raises(ValueError, match="3 keys for 4"):
        crit.contrast_grams(P, Q, ids[:3])


# ---------------------------------------------------------------------------------------- segmentation
def _seg_net():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5))
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 1.5)
    return net


def test_segmentation_loss_value_gradient_and_eval_mode():
    net = _seg_net()
    running = net[1].running_mean.clone()
    torch.manual_seed(5)
    x = torch.rand(2, 3, 6, 7)
    y = torch.randint(0, 5, (2, 6, 7))
    y[0, 0] = 255
    enhancer = nn.Conv2d(3, 3, 1)
    loss_fn = SegmentationLoss(net)
    loss_fn.train()
    assert not net.training and not net[1].training

    E = enhancer(x)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    normed = torch.stack([(E[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    expected = F.cross_entropy(net(normed), y, ignore_index=255)
    loss = loss_fn(E, y)
    close(loss, expected, rtol=1e-5)
    loss.backward()
    assert enhancer.weight.grad is not None and enhancer.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())

    enhancer.zero_grad(set_to_none=True)
    E = enhancer(x)
    ref = SegmentationLoss(net, detach=True)(E, y)
    close(ref, expected, rtol=1e-5)
    assert not ref.requires_grad  # the reference: no gradient reaches the enhancer
    (ref + 0 * E.sum()).backward()
    assert enhancer.weight.grad is None or enhancer.weight.grad.abs().sum() == 0
    assert not net.training and torch.equal(net[1].running_mean, running)
    net.train()  # switched by someone else: the loss still evaluates in eval mode
    close(loss_fn(x, y), F.cross_entropy(net.eval()(torch.stack(
        [(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)), y, ignore_index=255), rtol=1e-5)
    assert torch.equal(net[1].running_mean, running)


def _bn_stats_recorder(module):
    """Forward hook storing the per-channel batch mean/var of a BatchNorm's first input."""
    seen = {}

    def hook(m, inp, out):
        if "mean" not in seen:
            seen["mean"] = inp[0].detach().mean(dim=(0, 2, 3))
            seen["var"] = inp[0].detach().var(dim=(0, 2, 3), unbiased=True)
    module.register_forward_hook(hook)
    return seen


def test_seg_train_mode_gives_reference_batchnorm_statistics_and_dropout():
    """--seg_train_mode (issue 6.6 / 7.3): BN momentum 0.01 backbone / 0.1 head, stats drift, dropout on;
    a container's .eval()/.train() does not undo it; the default keeps running stats unchanged."""
    from network.modeling import deeplabv3plus_mobilenet
    from losses import SCLLoss

    torch.manual_seed(0)
    E, y = torch.rand(2, 3, 64, 64), torch.randint(0, 19, (2, 64, 64))
    for train_mode in (True, False):
        net = deeplabv3plus_mobilenet()
        net.eval()
        bns = {part: next(m for m in getattr(net, part).modules() if isinstance(m, nn.BatchNorm2d))
               for part in ("backbone", "classifier")}
        old = {p: (bn.running_mean.clone(), bn.running_var.clone()) for p, bn in bns.items()}
        seen = {p: _bn_stats_recorder(bn) for p, bn in bns.items()}
        drop = next(m for m in net.classifier.modules() if isinstance(m, nn.Dropout))
        drop_on = []
        drop.register_forward_hook(lambda m, i, o: drop_on.append(m.training))
        crit = SCLLoss({"seg": 1.0}, seg_net=net, seg_train_mode=train_mode)
        crit.eval()  # the training loop's container switches must not change the segmentation net's mode
        crit(E, E, None, y)
        crit.train()
        assert drop_on == [train_mode] and net.training == train_mode
        for part, momentum in (("backbone", 0.01), ("classifier", 0.1)):
            bn, (mean0, var0), st = bns[part], old[part], seen[part]
            if train_mode:
                assert bn.momentum == momentum
                close(bn.running_mean, (1 - momentum) * mean0 + momentum * st["mean"], rtol=1e-4, atol=1e-6)
                close(bn.running_var, (1 - momentum) * var0 + momentum * st["var"], rtol=1e-4, atol=1e-6)
            else:
                assert torch.equal(bn.running_mean, mean0) and torch.equal(bn.running_var, var0)


# ---------------------------------------------------------------------------- Myloss, the reference name
MYLOSS_NAMES = ("Features", "ImageOrFeatures", "srgb_to_linear", "L_color", "L_spa", "L_exp", "L_chroma", "L_balance",
                "L_TV", "L_con", "contrastive_loss", "L_segexp", "VGGFeatures", "get_vgg_features", "gram", "_VGGLoss",
                "perception_loss", "PerceptualLoss", "GramDict", "feature_contrastive_loss", "SegmentationLoss")


def test_myloss_keeps_its_names_each_the_object_of_its_one_home():
    """``import Myloss`` keeps every name it had; each is the object defined in losses/ (or utils.colour), and
    Myloss defines nothing itself."""
    import sys

    for name in MYLOSS_NAMES:
        obj = getattr(Myloss, name)
        home = "losses.vgg" if name in ("Features", "ImageOrFeatures") else obj.__module__  # typing aliases
        assert home.startswith("losses.") or (home, name) == ("utils.colour", "srgb_to_linear"), (name, home)
        assert getattr(sys.modules[home], name) is obj
    own = [n for n, v in vars(Myloss).items() if getattr(v, "__module__", None) == "Myloss"]
    assert own == [] and set(MYLOSS_NAMES) <= set(Myloss.__all__)
    assert losses.SCLLoss.__module__ == "losses.objectives" and losses.L_TV is Myloss.L_TV

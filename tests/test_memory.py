"""EMNet external memory (SPEC §6): update rule case by case, retrieval, refine formula, checkpoint format."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from network.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_normalize
from network.memory import (RATIO_EPS, ExternalMemory, build_query_net, gt_mean_oracle, guard_denominator,
                            pool_value, pooling_for, query, refine)
from utils.errors import UserError


def _tiny(noise=0.0, seed=0):
    """M=4, K=3, V=3 with hand-built unit keys e1, e2, e3, (e1+e2)/√2 and distinct values; ages 0."""
    mem = ExternalMemory(mem_size=4, key_dim=3, value_dim=3, thres=0.05, age_noise=noise,
                         generator=torch.Generator().manual_seed(seed))
    mem.key.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1 / math.sqrt(2), 1 / math.sqrt(2), 0]]))
    mem.value.copy_(torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9], [0.2, 0.2, 0.2]]))
    return mem


def test_init_buffers():
    mem = ExternalMemory(mem_size=50, key_dim=8, value_dim=12, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(mem.key.norm(dim=1), torch.ones(50))
    assert mem.value.min() >= 0 and mem.value.max() < 1
    assert torch.equal(mem.age, torch.zeros(50)) and torch.equal(mem.top_index, torch.full((50,), -1))
    assert mem.top_index.dtype == torch.long
    assert set(mem.state_dict()) == {"key", "value", "age", "top_index"}
    again = ExternalMemory(mem_size=50, key_dim=8, value_dim=12, generator=torch.Generator().manual_seed(3))
    assert torch.equal(mem.key, again.key) and torch.equal(mem.value, again.value)


def test_update_match_merges_key():
    mem = _tiny()
    mem.age.copy_(torch.tensor([5.0, 6.0, 7.0, 8.0]))
    q = F.normalize(torch.tensor([[0.9, 0.1, 0.2]]), dim=1)       # nearest slot 0
    v = torch.tensor([[0.12, 0.21, 0.29]])                       # distance mean(.02,.01,.01)=0.0133 < 0.05
    value_before = mem.value.clone()
    out = mem.update(q, v, torch.tensor([7]))
    assert out == {"matched": 1, "written": 0}
    expected = F.normalize(torch.tensor([1.0, 0, 0]) + q[0], dim=0)
    assert torch.allclose(mem.key[0], expected)
    assert torch.equal(mem.age, torch.tensor([0.0, 7.0, 8.0, 9.0]))
    assert torch.equal(mem.value, value_before)
    assert torch.equal(mem.top_index, torch.full((4,), -1))


def test_update_miss_replaces_oldest():
    mem = _tiny()
    mem.age.copy_(torch.tensor([5.0, 9.0, 7.0, 1.0]))
    q = F.normalize(torch.tensor([[0.9, 0.1, 0.2]]), dim=1)       # nearest slot 0 but colour far away
    v = torch.tensor([[0.9, 0.9, 0.9]])
    out = mem.update(q, v, torch.tensor([42]))
    assert out == {"matched": 0, "written": 1}
    assert torch.equal(mem.key[1], q[0]) and torch.equal(mem.value[1], v[0])
    assert mem.top_index[1] == 42
    assert torch.equal(mem.age, torch.tensor([6.0, 0.0, 8.0, 2.0]))
    assert torch.equal(mem.key[0], torch.tensor([1.0, 0, 0]))   # the nearest slot is untouched


def test_update_two_misses_go_to_distinct_oldest_slots():
    mem = _tiny()
    mem.age.copy_(torch.tensor([3.0, 9.0, 2.0, 8.0]))
    q = F.normalize(torch.tensor([[0.0, 0.2, 1.0], [0.0, 0.3, 1.0]]), dim=1)   # both nearest slot 2
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert mem.update(q, v, torch.tensor([10, 11])) == {"matched": 0, "written": 2}
    # first miss → oldest (slot 1), second → next oldest (slot 3)
    assert torch.equal(mem.key[1], q[0]) and torch.equal(mem.key[3], q[1])
    assert torch.equal(mem.value[1], v[0]) and torch.equal(mem.value[3], v[1])
    assert mem.top_index.tolist() == [-1, 10, -1, 11]
    assert torch.equal(mem.age, torch.tensor([4.0, 0.0, 3.0, 0.0]))


def test_update_match_and_miss_in_one_batch():
    mem = _tiny()
    mem.age.copy_(torch.tensor([1.0, 2.0, 3.0, 9.0]))
    q = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    v = torch.tensor([[0.4, 0.5, 0.6], [0.0, 0.0, 0.0]])         # first matches slot 1 exactly, second misses
    assert mem.update(q, v, torch.tensor([0, 1])) == {"matched": 1, "written": 1}
    assert torch.allclose(mem.key[1], torch.tensor([0.0, 1.0, 0.0]))   # normalise(e2 + e2)
    assert torch.equal(mem.key[3], q[1]) and mem.top_index[3] == 1
    assert torch.equal(mem.age, torch.tensor([2.0, 0.0, 4.0, 0.0]))


def test_update_matches_on_same_slot_are_summed():
    mem = _tiny()
    q = F.normalize(torch.tensor([[1.0, 0.3, 0.0], [1.0, 0.0, 0.4], [1.0, 0.1, 0.1]]), dim=1)
    v = mem.value[0].expand(3, 3).clone()
    assert mem.update(q, v, torch.arange(3)) == {"matched": 3, "written": 0}
    expected = F.normalize(torch.tensor([1.0, 0, 0]) + q.sum(0), dim=0)
    assert torch.allclose(mem.key[0], expected, atol=1e-6)
    assert mem.age.tolist() == [0.0, 1.0, 1.0, 1.0]


def test_age_noise_reorders_near_equal_but_not_much_younger():
    picked = set()
    for seed in range(200):
        mem = _tiny(noise=4.0, seed=seed)
        mem.age.copy_(torch.tensor([20.0, 19.0, 11.9, 0.0]))     # slot 2 is 8.1 > 2·noise younger
        mem.update(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([5]))
        slot = int((mem.top_index == 5).nonzero())
        picked.add(slot)
    assert picked == {0, 1}


def test_read_top1_and_topk_mean():
    mem = _tiny()
    q = F.normalize(torch.tensor([[0.0, 1.0, 0.1], [1.0, 0.9, 0.0]]), dim=1)
    assert torch.equal(mem.read(q), mem.value[[1, 3]])
    # top-2 of the first query: slots 1 (e2) and 3 ((e1+e2)/√2)
    assert torch.allclose(mem.read(q[:1], top_k=2), (mem.value[1] + mem.value[3]) / 2)


def test_imagenet_normalize():
    x = torch.rand(2, 3, 5, 4)
    y = imagenet_normalize(x)
    for c in range(3):
        assert torch.allclose(y[:, c], (x[:, c] - IMAGENET_MEAN[c]) / IMAGENET_STD[c])


def test_query_net_frozen_eval_and_retrieval():
    torch.manual_seed(0)
    net = build_query_net(pretrained=False)
    parent = nn.Sequential(net)
    parent.train()
    assert not net.training and all(not m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    imgs = torch.rand(3, 3, 40, 48) * torch.tensor([0.2, 0.6, 1.0]).view(3, 1, 1, 1)
    q = query(net, imgs)
    assert q.shape == (3, 512) and torch.allclose(q.norm(dim=1), torch.ones(3), atol=1e-5)
    gts = torch.rand(3, 3, 40, 48)
    mem = ExternalMemory(mem_size=16, key_dim=512, value_dim=3, generator=torch.Generator().manual_seed(1))
    mem.key[[4, 9, 13]] = q
    mem.value[[4, 9, 13]] = pool_value(gts, 1)
    assert torch.equal(mem.read(q), pool_value(gts, 1))


def test_query_net_pretrained_loads_fake_file(fake_torch_home):
    import torchvision.models as tvm
    net = build_query_net(pretrained=True)
    state = torch.load(fake_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth", weights_only=True)
    assert torch.equal(net.conv1.weight, state["conv1.weight"])
    assert torch.equal(net.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert isinstance(net.fc, nn.Identity) and isinstance(net, tvm.ResNet)


def test_query_net_missing_file():
    with pytest.raises(UserError, match="resnet18-f37072fd.pth"):
        build_query_net(pretrained=True)


def test_pool_value_order():
    gt = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    v = pool_value(gt, 2)
    assert v.shape == (2, 12)
    # channel-major: index c·4 + i·2 + j = mean of the (i, j) 2x2 block of channel c
    for n in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    assert v[n, c * 4 + i * 2 + j] == gt[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean()
    vm = pool_value(gt, 2, pooling_mean=True)
    assert vm.shape == (2, 4) and torch.allclose(vm, v.view(2, 3, 4).mean(1))
    assert pool_value(gt, 1).shape == (2, 3)


def test_refine_p1_by_hand():
    y = torch.tensor([[[[0.2, 0.4]], [[0.1, 0.1]], [[0.5, 0.7]]]])  # (1,3,1,2): means .3 .1 .6
    m_mem = torch.tensor([[0.6, 0.1, 0.3]])
    out = refine(y, m_mem, 1)
    for c, (mo, mm) in enumerate([(0.3, 0.6), (0.1, 0.1), (0.6, 0.3)]):
        w_out = math.exp(mo) / (math.exp(mo) + math.exp(mm))
        scale = w_out + (1 - w_out) * mm / mo
        for x in range(2):
            assert out[0, c, 0, x].item() == pytest.approx(min(max(y[0, c, 0, x].item() * scale, 0), 1), abs=1e-6)
    assert torch.allclose(out[0, 1], y[0, 1])                         # m_mem == m_out → unchanged


def test_refine_p1_matches_unguarded_reference_exactly():
    torch.manual_seed(0)
    y, m_mem = torch.rand(2, 3, 9, 7), torch.rand(2, 3)
    m_out = F.adaptive_avg_pool2d(y, 1)
    mm = m_mem.view(2, 3, 1, 1)
    w = torch.softmax(torch.stack([m_out, mm]), dim=0)
    ref = torch.clamp(y * (w[0] + w[1] * (mm / m_out)), 0, 1)
    assert torch.equal(refine(y, m_mem, 1), ref)


def test_refine_p2_loops():
    torch.manual_seed(1)
    y, m_mem = torch.rand(2, 3, 6, 8), torch.rand(2, 12)
    out = refine(y, m_mem, 2)
    exp = torch.empty_like(y)
    for n in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    blk = y[n, c, 3 * i:3 * i + 3, 4 * j:4 * j + 4]
                    mo, mm = blk.mean().item(), m_mem[n, c * 4 + i * 2 + j].item()
                    w_out = math.exp(mo) / (math.exp(mo) + math.exp(mm))
                    scale = w_out + (1 - w_out) * mm / mo
                    exp[n, c, 3 * i:3 * i + 3, 4 * j:4 * j + 4] = (blk * scale).clamp(0, 1)
    assert torch.allclose(out, exp, atol=1e-5)
    # pooling_mean: one scale per cell, shared by the three channels
    mmean = torch.rand(2, 4)
    out_m = refine(y, mmean, 2, pooling_mean=True)
    g = y.mean(1)
    mo = g[0, 0:3, 0:4].mean().item()
    mm = mmean[0, 0].item()
    w_out = math.exp(mo) / (math.exp(mo) + math.exp(mm))
    scale = w_out + (1 - w_out) * mm / mo
    assert torch.allclose(out_m[0, :, 0:3, 0:4], (y[0, :, 0:3, 0:4] * scale).clamp(0, 1), atol=1e-5)


def test_refine_identity_when_memory_equals_output_mean():
    torch.manual_seed(2)
    y = torch.rand(1, 3, 8, 8)
    for p in (1, 2, 4):
        assert torch.allclose(refine(y, pool_value(y, p), p), y, atol=1e-6)


def test_refine_black_image_is_finite():
    out = refine(torch.zeros(1, 3, 4, 4), torch.full((1, 3), 0.5), 1)
    assert torch.equal(out, torch.zeros(1, 3, 4, 4))


def test_refine_keeps_the_sign_of_a_negative_pooled_mean():
    """Issue 22.11: the reference divides by the raw pooled mean, sign included; clamp_min(1e-8) turned
    -0.01 into 1e-8, a ratio of +1e5 and a white image."""
    r = torch.tensor([0.4, -0.2, -0.2, -0.04]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)  # raw mean -0.01
    out = refine(r, torch.full((1, 3), 0.001), 1)
    w_out = math.exp(-0.01) / (math.exp(-0.01) + math.exp(0.001))
    scale = w_out + (1 - w_out) * 0.001 / -0.01  # ≈ 0.4470: positive, so the bright pixel stays grey
    assert 0.44 < scale < 0.45
    expected = torch.tensor([[0.4 * scale, 0.0], [0.0, 0.0]]).expand(3, 2, 2)
    assert torch.allclose(out[0], expected, atol=1e-6)
    # a ratio that makes the scale negative gives black, as the reference's clamp
    assert torch.equal(refine(r, torch.full((1, 3), 0.5), 1), torch.zeros(1, 3, 2, 2))
    gt = torch.full((1, 3, 2, 2), 0.02)  # GT-mean oracle: ratio 0.02 / -0.01 = -2 → black too
    assert torch.equal(gt_mean_oracle(r, gt), torch.zeros(1, 3, 2, 2))


def test_guard_denominator_only_touches_magnitudes_below_eps():
    m = torch.tensor([0.3, -0.25, RATIO_EPS, -RATIO_EPS, 3e-9, -3e-9, 0.0, -0.0])
    got = guard_denominator(m)
    eps = RATIO_EPS
    assert torch.equal(got, torch.tensor([0.3, -0.25, eps, -eps, eps, -eps, eps, eps]))  # 0 and -0.0 → +eps
    assert torch.equal(got[:4], m[:4])  # the reference's division is unchanged wherever |m| >= eps
    with pytest.raises(ValueError, match="eps"):
        guard_denominator(m, eps=0.0)


def test_gt_mean_oracle():
    torch.manual_seed(3)
    y, gt = torch.rand(2, 3, 8, 8) * 0.5, torch.rand(2, 3, 8, 8) * 0.5
    out = gt_mean_oracle(y, gt)
    ratio = gt.mean(dim=(2, 3), keepdim=True) / y.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(out, (y * ratio).clamp(0, 1), atol=1e-6)
    assert torch.allclose(pool_value(gt_mean_oracle(y, gt, p=2), 2), pool_value(gt, 2), atol=1e-5)


def test_checkpoint_roundtrip(tmp_path):
    mem = ExternalMemory(mem_size=10, key_dim=6, value_dim=12, generator=torch.Generator().manual_seed(4))
    mem.update(F.normalize(torch.rand(3, 6), dim=1), torch.rand(3, 12), torch.tensor([3, 4, 5]))
    ck = mem.to_checkpoint(epoch=17)
    assert set(ck) == {"epoch", "mem_key", "mem_vale", "mem_age", "mem_index"}
    assert all(t.device.type == "cpu" for k, t in ck.items() if k != "epoch")
    torch.save(ck, tmp_path / "mem.pth")
    back = ExternalMemory.from_checkpoint(str(tmp_path / "mem.pth"), map_location="cpu", pooling=2)
    for name in ("key", "value", "age", "top_index"):
        assert torch.equal(getattr(back, name), getattr(mem, name))
    assert (back.mem_size, back.key_dim, back.value_dim) == (10, 6, 12)
    assert back.top_index.dtype == torch.long
    # the reference may store mem_index as float: still loads as long
    ck2 = dict(ck, mem_index=ck["mem_index"].float())
    assert ExternalMemory.from_checkpoint(ck2).top_index.dtype == torch.long


def test_checkpoint_errors(tmp_path):
    mem = ExternalMemory(mem_size=5, key_dim=4, value_dim=3)
    ck = mem.to_checkpoint(0)
    del ck["mem_vale"]
    torch.save(ck, tmp_path / "enhancer.pth")
    with pytest.raises(UserError, match=r"enhancer\.pth.*mem_vale"):
        ExternalMemory.from_checkpoint(str(tmp_path / "enhancer.pth"))
    torch.save(mem.to_checkpoint(0), tmp_path / "m.pth")
    with pytest.raises(UserError, match=r"m\.pth.*size 3"):
        ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=2)
    with pytest.raises(UserError, match=r"m\.pth"):
        ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=1, pooling_mean=True)
    ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=1)
    with pytest.raises(UserError, match="not found"):
        ExternalMemory.from_checkpoint(str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match=r"latest\.pth.*mem_key"):
        ExternalMemory.from_checkpoint({"epoch": 1}, name="latest.pth")


def test_refine_and_oracle_pool_the_unclamped_output():
    """SPEC §6 (issue 6.3): m_out = pool(r) of the raw output r, the image multiplied is clamp(r)."""
    r = torch.tensor([1.6, 0.4]).view(1, 1, 1, 2).repeat(1, 3, 1, 1)  # raw mean 1.0, clamped mean 0.7
    out = refine(r, torch.full((1, 3), 0.5), 1)
    w_out = math.exp(1.0) / (math.exp(1.0) + math.exp(0.5))
    scale = w_out + (1 - w_out) * 0.5 / 1.0
    assert torch.allclose(out[0, :, 0], torch.tensor([scale, 0.4 * scale]).expand(3, 2), atol=1e-6)
    gt = torch.full((1, 3, 1, 2), 0.3)
    assert torch.allclose(gt_mean_oracle(r, gt)[0, :, 0], torch.tensor([0.3, 0.4 * 0.3]).expand(3, 2), atol=1e-6)


@pytest.mark.parametrize("value_dim,pooling", [(3, (1, False)), (1, (1, True)), (12, (2, False)), (4, (2, True)),
                                               (27, (3, False)), (9, (3, True)), (48, (4, False)), (16, (4, True))])
def test_memory_knows_its_pooling_from_the_value_size(tmp_path, value_dim, pooling):
    assert pooling_for(value_dim) == pooling
    mem = ExternalMemory(mem_size=6, key_dim=4, value_dim=value_dim, generator=torch.Generator().manual_seed(0))
    assert (mem.pooling_size, mem.pooling_mean) == pooling
    torch.save(mem.to_checkpoint(1), tmp_path / "m.pth")
    back = ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"))  # no pooling flags needed
    assert (back.pooling_size, back.pooling_mean, back.value_dim) == (*pooling, value_dim)
    torch.manual_seed(1)
    gt, r = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8) * 1.2
    assert torch.equal(back.value_of(gt), pool_value(gt, *pooling))
    values = back.read(F.normalize(torch.rand(2, 4), dim=1))
    assert torch.equal(back.refine(r, values), refine(r, values, *pooling))
    assert torch.equal(back.oracle(r, gt), gt_mean_oracle(r, gt, *pooling))
    with pytest.raises(UserError, match="m.pth"):  # an expectation that does not hold is checked
        ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=pooling[0] + 1)


def test_pooling_is_unique_and_bad_value_sizes_are_refused():
    seen = {}
    for p in range(1, 200):
        for mean in (False, True):
            v = 3 * p * p if not mean else p * p
            assert v not in seen, (v, seen.get(v), (p, mean))  # p² = 3·q² never happens
            seen[v] = (p, mean)
            assert pooling_for(v) == (p, mean)
    assert pooling_for(2) is None and pooling_for(0) is None
    with pytest.raises(ValueError):
        ExternalMemory(mem_size=2, key_dim=4, value_dim=6)
    assert not hasattr(ExternalMemory(mem_size=2, key_dim=4), "top_k")  # no state that does nothing


def test_memory_checkpoint_with_wrong_pooling_is_an_error(tmp_path):
    mem = ExternalMemory(mem_size=4, value_dim=3)
    torch.save(mem.to_checkpoint(1), tmp_path / "m.pth")
    with pytest.raises(UserError, match="pooling"):
        ExternalMemory.from_checkpoint(str(tmp_path / "m.pth"), pooling=2)

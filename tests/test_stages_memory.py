"""stages/memory.py through train.py on a tiny LOL tree: pooled memories, and their use by lowlight_test.py."""
from __future__ import annotations

import csv

import pytest
import torch

import lowlight_test
import train
from helpers import make_lol_train_val
from utils.errors import UserError


@pytest.mark.parametrize("pooling", [["--pooling_size", "2"], ["--pooling_size", "2", "--pooling_mean"]])
def test_memory_stage_with_pooling(tmp_path, fake_torch_home, pooling):
    from lowlight_model import enhance_net_nopool

    train_dir, val_dir = make_lol_train_val(tmp_path)
    torch.save(enhance_net_nopool().state_dict(), tmp_path / "dce.pth")
    train.main(["--stage", "memory", "--pretrain_weights", str(tmp_path / "dce.pth"), "--train_dir", str(train_dir),
                "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "4", "--num_workers", "0",
                "--nepoch", "1", "--mem_size", "8", "--device", "cpu", "--save_dir", str(tmp_path / "log"),
                "--env", "m", *pooling])
    mem_path = tmp_path / "log" / "m" / "models" / "memory_best.pth"
    v = torch.load(mem_path, weights_only=True)["mem_vale"]
    assert v.shape == (8, 4 if "--pooling_mean" in pooling else 12)
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights", str(tmp_path / "dce.pth"),
                        "--mem_weights", str(mem_path), "--device", "cpu", *pooling])
    with_flags = list(csv.DictReader(open(out / "results.csv")))
    assert "mem_psnr" in with_flags[0]
    out2 = tmp_path / "res2"  # the pooling is read from the checkpoint: same figures without the flags
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out2), "--weights", str(tmp_path / "dce.pth"),
                        "--mem_weights", str(mem_path), "--device", "cpu"])
    assert list(csv.DictReader(open(out2 / "results.csv"))) == with_flags
    with pytest.raises(UserError, match="pooling"):  # a p=2 memory read with p=1 is refused
        lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights",
                            str(tmp_path / "dce.pth"), "--mem_weights", str(mem_path), "--device", "cpu",
                            "--pooling_size", "1"])


def test_memory_batch_larger_than_the_training_set_is_one_line_error(tmp_path):
    train_dir, val_dir = make_lol_train_val(tmp_path)
    with pytest.raises(UserError, match="--batch_size 128 exceeds the 6 training pairs"):
        train.main(["--stage", "memory", "--train_dir", str(train_dir), "--val_dir", str(val_dir),
                    "--device", "cpu", "--save_dir", str(tmp_path / "log"), "--num_workers", "0"])


def test_enhancer_query_memory_needs_no_imagenet_file(tmp_path, monkeypatch):
    """--query enhancer: the keys are the frozen EMNet's own features; the memory says so in its checkpoint, and
    lowlight_test.py reads it back with an empty TORCH_HOME (no ResNet-18 file anywhere)."""
    from network.emnet import EMNet
    from network.query import EnhancerQuery

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    train_dir, val_dir = make_lol_train_val(tmp_path)
    torch.manual_seed(0)
    torch.save(EMNet(dim=4).state_dict(), tmp_path / "emnet.pth")
    train.main(["--stage", "memory", "--pretrain_weights", str(tmp_path / "emnet.pth"), "--train_dir", str(train_dir),
                "--val_dir", str(val_dir), "--train_ps", "32", "--batch_size", "4", "--num_workers", "0",
                "--nepoch", "1", "--mem_size", "8", "--device", "cpu", "--save_dir", str(tmp_path / "log"),
                "--env", "m", "--query", "enhancer"])
    ck = torch.load(tmp_path / "log" / "m" / "models" / "memory_best.pth", weights_only=True)
    assert ck["query"] == "enhancer"
    assert ck["mem_key"].shape == (8, 2 * 15 * 4)  # mean and std of 4 + 8 + 16 + 32 channels
    assert torch.allclose(ck["mem_key"][ck["mem_index"] >= 0].norm(dim=1), torch.ones(1), atol=1e-5)
    out = tmp_path / "res"
    lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(out), "--weights", str(tmp_path / "emnet.pth"),
                        "--mem_weights", str(tmp_path / "log" / "m" / "models" / "memory_best.pth"),
                        "--device", "cpu", "--no_lpips"])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert rows and all(float(r["mem_psnr"]) > 0 for r in rows)
    assert "query: enhancer" in (out / "result.txt").read_text()
    # a memory built on another enhancer's features is refused in one line
    torch.save(EMNet(dim=2).state_dict(), tmp_path / "emnet2.pth")
    with pytest.raises(UserError, match="another enhancer's features"):
        lowlight_test.main(["--input_dir", str(val_dir), "--result_dir", str(tmp_path / "r2"), "--weights",
                            str(tmp_path / "emnet2.pth"), "--mem_weights",
                            str(tmp_path / "log" / "m" / "models" / "memory_best.pth"), "--device", "cpu"])
    # the query is the features of the layers the registry names, by hand: mean and std of each hooked map
    from network.enhancer import load_enhancer
    enh = load_enhancer("auto", str(tmp_path / "emnet.pth"), torch.device("cpu"))
    x = torch.rand(1, 3, 24, 32)
    net = enh.net
    with torch.no_grad():
        e1 = net.encoder_level1(net.patch_embed(x))
        e2 = net.encoder_level2(net.down1_2(e1))
        e3 = net.encoder_level3(net.down2_3(e2))
        lat = net.decoder_latent(net.latent(net.down3_4(e3)))
    want = torch.cat([torch.cat([f.mean((2, 3)), f.std((2, 3))], 1) for f in (e1, e2, e3, lat)], 1)
    assert torch.allclose(EnhancerQuery(enh)(x), want, atol=1e-6)


def test_reference_memory_checkpoint_has_no_query_key(tmp_path):
    from network.memory import ExternalMemory

    ck = ExternalMemory(4, 512, 3).to_checkpoint(1)
    assert set(ck) == {"epoch", "mem_key", "mem_vale", "mem_age", "mem_index"}
    assert ExternalMemory.from_checkpoint(ck).query_kind == "resnet18"
    with pytest.raises(UserError, match="unknown memory query 'vgg'"):
        ExternalMemory.from_checkpoint({**ck, "query": "vgg"}, name="m.pth")


def test_enhancer_query_reuses_the_enhancing_forward_pass():
    """The query of the image the enhancer has just enhanced costs no second forward pass, and equals a fresh one."""
    from network.emnet import EMNet
    from network.enhancer import Enhancer
    from network.query import EnhancerQuery

    torch.manual_seed(0)
    enh = Enhancer(EMNet(dim=2)).eval()
    q = EnhancerQuery(enh)
    calls = []
    enh.net.register_forward_pre_hook(lambda m, a: calls.append(1))
    x, other = torch.rand(1, 3, 20, 28), torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        fresh = q(x)
        assert len(calls) == 1
        enh(x)
        again = q(x)
        assert len(calls) == 2 and torch.equal(again, fresh)  # reused
        enh(other)
        assert torch.equal(q(x), fresh) and len(calls) == 4  # another image: computed again

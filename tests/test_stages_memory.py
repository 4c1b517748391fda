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

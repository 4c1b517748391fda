"""The three shell scripts: valid bash, and every flag they pass is one the entry points accept."""
from __future__ import annotations

import re
import subprocess

import pytest

import lowlight_test
import train
from helpers import ROOT


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-zA-Z_][\w]*)", text))


def _accepted(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize("script", ["train_enhancer_script.sh", "train_memory_script.sh", "test_script.sh"])
def test_script_is_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0


def test_script_flags_exist():
    text = (ROOT / "train_enhancer_script.sh").read_text()
    scl, lol = text.split("lol_v1)", 1)
    torchrun = {"--nproc_per_node"}
    assert _flags(scl) - torchrun <= _accepted(train.build_parser("scl"))
    assert _flags(lol) <= _accepted(train.build_parser("enhancer"))
    assert _flags((ROOT / "train_memory_script.sh").read_text()) <= _accepted(train.build_parser("memory"))
    assert _flags((ROOT / "test_script.sh").read_text()) <= _accepted(lowlight_test.build_parser())
    # the reference flag names of the issues are all there
    assert {"--data_root", "--ckpt", "--model", "--output_stride", "--total_itrs", "--lowlight_lr",
            "--lowlight_weight_decay", "--grad_clip_norm", "--snapshots_folder", "--random_seed", "--enable_vis",
            "--vis_port", "--vis_env", "--contrast_dir", "--device", "--resume"} <= _accepted(train.build_parser("scl"))
    assert {"--env", "--arch", "--embed_dim", "--nepoch", "--lr_initial", "--batch_size", "--train_ps", "--train_dir",
            "--val_dir", "--warmup", "--warmup_epochs", "--optimizer", "--weight_decay", "--ssim_lambda",
            "--lpips_lambda", "--l1_lambda", "--l2_lambda", "--val_time", "--resume"} <= _accepted(
        train.build_parser("enhancer"))
    assert {"--pretrain_weights", "--mem_size", "--K_feat_dim", "--V_feat_dim", "--thres", "--pooling_size",
            "--top_k", "--testing_top_k", "--alpha", "--cos_thres", "--pooling_mean"} <= _accepted(
        train.build_parser("memory"))
    assert {"--arch", "--weights", "--mem_weights", "--result_dir", "--mem_size", "--pooling_size", "--V_feat_dim",
            "--embed_dim", "--testing_top_k", "--save_images", "--input_dir", "--output_dir",
            "--device"} <= _accepted(lowlight_test.build_parser())


def test_documented_train_commands_parse():
    """Every ``python train.py --stage S ...`` command in README.md and docs/*.md (continuation lines
    joined) is accepted by that stage's parser: a renamed or removed flag breaks the documented recipes
    here (the shipped checkpoints' commands are in docs/recipes.md)."""
    import shlex

    pages = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    text = "\n".join(page.read_text() for page in pages).replace("\\\n", " ")
    commands = [line.split("#")[0] for line in text.splitlines() if re.match(r"\s*python train\.py --stage", line)]
    assert len(commands) >= 2  # the two shipped models
    for cmd in commands:
        argv = shlex.split(cmd)[2:]
        stage = argv[argv.index("--stage") + 1]
        assert train.build_parser(stage).parse_args(argv).stage == stage  # an unknown flag exits (status 2)
    shipped = next(c for c in commands if "data128p" in c)
    assert "--chroma_linear_share 0.25" in shipped and "--chroma_space linear" in shipped
    assert any("--arch dce" in c and "datasets/data128/" in c for c in commands)  # the supervised checkpoint

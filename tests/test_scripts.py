"""The three shell scripts: valid bash, and every flag they pass is one the entry points accept."""
from __future__ import annotations

import re
import subprocess

import pytest

import lowlight_test
import train
from datasets import prepare_demo
from helpers import ROOT


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])(--[a-zA-Z_][\w]*)", text))


def _accepted(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


SCRIPTS = ["train_enhancer_script.sh", "train_memory_script.sh", "test_script.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_valid_bash(script):
    assert subprocess.run(["bash", "-n", str(ROOT / script)]).returncode == 0


COMMANDS = {"--stage scl": lambda: train.build_parser("scl"), "--stage enhancer": lambda: train.build_parser("enhancer"),
            "--stage memory": lambda: train.build_parser("memory"), "lowlight_test.py": lowlight_test.build_parser,
            "datasets.prepare_demo": lambda: prepare_demo.build_parser()}
TORCHRUN = {"--nproc_per_node"}


def test_script_flags_exist():
    """Each command line of the scripts (continuations joined) passes only flags its entry point accepts, and
    every flag written anywhere in a script (the flag strings held in variables too) is one of theirs."""
    for script in SCRIPTS:
        text = (ROOT / script).read_text().replace("\\\n", " ")
        allowed = TORCHRUN.union(*(_accepted(make()) for make in COMMANDS.values()))
        assert _flags(text) <= allowed, script
        commands = 0
        for line in text.splitlines():
            for marker, make in COMMANDS.items():
                if marker in line and not line.lstrip().startswith("#"):
                    commands += 1
                    assert _flags(line.split(marker, 1)[1]) - TORCHRUN <= _accepted(make()), (script, line)
        assert commands >= 1, script
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


# --------------------------------------------------------------------------------------- SMOKE=1 runs
# Each script's SMOKE=1 runs it end to end on freshly built demo data (tiny sizes, CPU, an empty TORCH_HOME):
# 10-45 s each here. One folder for the module: a script reuses what an earlier one built (the data, the
# smoke enhancer and memory) and builds what is missing, so each test also passes alone.
@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke")


def _smoke(smoke_dir, script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    import os
    import sys

    full = {**os.environ, "SMOKE": "1", "SMOKE_DIR": str(smoke_dir), "PYTHON": sys.executable,
            "OMP_NUM_THREADS": "1", **env}
    r = subprocess.run(["bash", str(ROOT / script), *args], env=full, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _mean_psnr(result: str, section: str) -> float:
    """The ``mean  psnr=`` line of one section (``== ori ==``) of a result.txt."""
    block = result.split(f"== {section} ==", 1)[1]
    return float(re.search(r"^mean\s+psnr=([\d.]+)", block, re.M).group(1))


def test_enhancer_script_smoke_scl(smoke_dir):
    _smoke(smoke_dir, "train_enhancer_script.sh", "scl")
    run = smoke_dir / "snapshots" / "scl"
    assert {"latest.pth", "Epoch2.pth", "Epoch4.pth", "train.log", "args.json"} <= {p.name for p in run.iterdir()}
    assert 5 < _mean_psnr((smoke_dir / "results" / "scl" / "result.txt").read_text(), "ori") < 40


def test_enhancer_script_smoke_lol_and_resume(smoke_dir):
    _smoke(smoke_dir, "train_enhancer_script.sh", "lol_v1")
    models = smoke_dir / "log" / "LOL_v1" / "models"
    assert {p.name for p in models.iterdir()} >= {"model_best.pth", "model_latest.pth"}
    log = (smoke_dir / "log" / "LOL_v1" / "train.log").read_text()
    assert float(re.search(r"best validation PSNR ([\d.]+)", log).group(1)) > 5
    # the run's folder now holds model_latest.pth: a second call resumes it (at its end: nothing to redo) ...
    _smoke(smoke_dir, "train_enhancer_script.sh", "lol_v1")
    log = (smoke_dir / "log" / "LOL_v1" / "train.log").read_text()
    assert "resumed" in log and "at iteration 4" in log
    # ... and RESTART=1 starts it afresh (--overwrite): a new log from the first epoch
    _smoke(smoke_dir, "train_enhancer_script.sh", "lol_v1", RESTART="1")
    log = (smoke_dir / "log" / "LOL_v1" / "train.log").read_text()
    assert "resumed" not in log and "epoch 1 step 2" in log


def test_memory_script_smoke(smoke_dir):
    _smoke(smoke_dir, "train_memory_script.sh", TORCH_HOME=str(smoke_dir / "empty_torch_home"))
    run = smoke_dir / "log" / "LOL_v1_mem"
    assert {p.name for p in (run / "models").iterdir()} >= {"memory_best.pth", "memory_latest.pth"}
    alone, best = map(float, re.search(r"enhancer alone PSNR ([\d.]+), best with memory ([\d.]+)",
                                       (run / "train.log").read_text()).groups())
    assert 5 < alone < best  # the memory's colour correction helps even this tiny enhancer


def test_test_script_smoke(smoke_dir):
    _smoke(smoke_dir, "test_script.sh")
    out = smoke_dir / "results" / "LOL_v1"
    result = (out / "result.txt").read_text()
    assert "query: enhancer" in result
    assert 5 < _mean_psnr(result, "ori") < _mean_psnr(result, "mem")
    assert len(list((out / "mem").glob("*.png"))) == len(list((out / "ori").glob("*.png"))) == 6
    assert (out / "results.csv").is_file() and (out / "comparison.png").is_file()

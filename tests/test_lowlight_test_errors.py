"""lowlight_test.py's faults (the cases of a new-user probe, named in the comments): every bad input is one
line naming the flag or path, nothing is created before the checks, and one bad image never ends the run."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from PIL import Image

import inference
import lowlight_model
import lowlight_test
from helpers import make_lol_v1, random_dce, run_cli_in_process, write_rgb
from utils.errors import UserError


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), path)
    return str(path)


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    write_rgb(src / "a.png", 20, 24, seed=1, scale=0.3)
    write_rgb(src / "sub" / "b.png", 18, 30, seed=2, scale=0.3)
    return src


def run(*argv):
    return lowlight_test.main([*map(str, argv), "--device", "cpu"])


def cli(*argv):
    """The command line, in this process (test_lowlight_test.py runs it as a real process); returns
    (exit status, stderr lines)."""
    code, err, _ = run_cli_in_process(lowlight_test.main, [*map(str, argv), "--device", "cpu"])
    return code, err


@pytest.mark.parametrize("flags,needle", [
    (["--tile", "-1"], "--tile -1"),                                   # tile_negative
    (["--tile", "3"], "--tile 3"),
    (["--arch", "emnet", "--embed_dim", "0"], "--embed_dim 0"),        # embed_dim_0
    (["--arch", "emnet", "--embed_dim", "-8"], "--embed_dim -8"),      # embed_dim_neg
    (["--embed_dim", "16"], "--arch emnet"),                            # ignored with auto
    (["--batch_size", "0"], "--batch_size 0"),
    (["--workers", "-1"], "--workers -1"),
    (["--memory_budget", "0"], "--memory_budget 0"),
    (["--memory_budget", "nan"], "--memory_budget nan"),
    (["--grid", "-2"], "--grid -2"),                                    # grid_neg
    (["--testing_top_k", "0"], "--testing_top_k 0"),                    # mem_topk0_garbage
    (["--mem_size", "0"], "--mem_size 0"),
    (["--pooling_size", "0"], "--pooling_size 0"),
])
def test_numeric_flags_are_checked_before_anything_is_created(tmp_path, photos, weights, flags, needle):
    out = tmp_path / "out"
    with pytest.raises(UserError, match=needle.replace("-", r"\-")):
        run("--input_dir", photos, "--output_dir", out, "--weights", weights, *flags)
    assert not out.exists()


@pytest.mark.parametrize("flags", [["--mem_weights", "m.pth"], ["--save_images"], ["--grid", "2"],
                                   ["--testing_top_k", "2"], ["--no_lpips"]])
def test_paired_flags_in_folder_mode_are_refused(tmp_path, photos, weights, flags):
    """mem_in_folder_mode_ignored: a flag that would be ignored is an error, not silence."""
    with pytest.raises(UserError, match=f"{flags[0]} applies only to paired evaluation"):
        run("--input_dir", photos, "--output_dir", tmp_path / "out", "--weights", weights, *flags)


@pytest.mark.parametrize("flags,needle", [(["--tile", "64"], "--tile applies only to folder mode"),
                                          (["--batch_size", "2"], "--batch_size applies only to folder mode"),
                                          (["--precision", "bf16"], "--precision bf16 applies to folder mode")])
def test_folder_flags_in_paired_mode_are_refused(tmp_path, weights, flags, needle):
    """paired_tile_ignored."""
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    with pytest.raises(UserError, match=needle):
        run("--input_dir", pairs, "--output_dir", tmp_path / "res", "--weights", weights, *flags)


def test_fp16_on_the_cpu_is_a_one_line_error(tmp_path, photos, weights):
    code, err = cli("--input_dir", photos, "--output_dir", tmp_path / "o", "--weights", weights, "--precision", "fp16")
    assert code == 2 and len(err) == 1 and "--precision fp16 needs a CUDA device" in err[0]


@pytest.mark.parametrize("where", ["subdir", "nested"])
def test_output_inside_the_input_folder_is_refused(tmp_path, photos, weights, where):
    """out_subdir_rerun_reenhances / out_subdir_overwrites_input."""
    out = photos / "enhanced" if where == "subdir" else photos / "sub" / "x"
    with pytest.raises(UserError, match="inside the input folder"):
        run("--input_dir", photos, "--output_dir", out, "--weights", weights)
    assert not out.exists()


def test_output_location_faults_are_one_line(tmp_path, photos, weights):
    """out_is_file, out_dir_in_way, out_proc: one line naming the path, nothing written."""
    (tmp_path / "file").write_text("x")
    code, err = cli("--input_dir", photos, "--output_dir", tmp_path / "file", "--weights", weights)
    assert code == 2 and len(err) == 1 and "is a file" in err[0] and "file" in err[0]
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("in the way")  # where sub/b.png must go
    code, err = cli("--input_dir", photos, "--output_dir", out, "--weights", weights)
    assert code == 2 and len(err) == 1 and str(out / "sub") in err[0]
    assert not (out / "a.png").exists()
    code, err = cli("--input_dir", photos, "--output_dir", "/proc/enhanced", "--weights", weights)
    assert code == 2 and len(err) == 1 and "/proc/enhanced" in err[0] and "not writable" in err[0]


def test_paired_output_location_is_checked_before_evaluating(tmp_path, weights):
    """paired_readonly_fs: an unusable result folder is reported before any pair is evaluated."""
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    (tmp_path / "res").write_text("x")
    code, err = cli("--input_dir", pairs, "--result_dir", tmp_path / "res" / "lol", "--weights", weights)
    assert code == 2 and len(err) == 1 and "is a file" in err[0]


@pytest.mark.parametrize("code_", [errno.EROFS, errno.ENOSPC])
def test_read_only_or_full_output_stops_with_one_line(tmp_path, photos, weights, monkeypatch, code_):
    """out_readonly_fs(_sub), disk full: the write fault names the path and ends the run (no traceback)."""
    def fail(y, path, quality=95, **kw):
        raise OSError(code_, os.strerror(code_), path)

    monkeypatch.setattr(inference, "save_image", fail)
    with pytest.raises(UserError, match=f"cannot write .*a.png \\({os.strerror(code_)}\\)"):
        run("--input_dir", photos, "--output_dir", tmp_path / "out", "--weights", weights)


def test_stale_temporary_files_are_removed_at_start(tmp_path, photos, weights):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = out / "sub" / ".tmp-b.png.k2j4_9zq.png"  # left by a killed save_image (utils.fs.atomic_write)
    stale.write_bytes(b"half")
    keep = out / "sub" / ".tmp-other.png.aaaaaaaa.png"  # not one of this run's targets: left alone
    keep.write_bytes(b"x")
    assert run("--input_dir", photos, "--output_dir", out, "--weights", weights) == 0
    assert not stale.exists() and keep.exists() and (out / "sub" / "b.png").exists()


@pytest.mark.parametrize("content", [b"hello\n", b"h", b'{"a": 1}\n'])
def test_text_file_as_checkpoint_is_one_line(tmp_path, photos, content):
    """ckpt_text_hello, ckpt_hw, ckpt_json: torch's KeyError/IndexError never leak."""
    (tmp_path / "c.pth").write_bytes(content)
    code, err = cli("--input_dir", photos, "--output_dir", tmp_path / "o", "--weights", tmp_path / "c.pth")
    assert code == 2 and len(err) == 1 and "c.pth" in err[0]
    assert not (tmp_path / "o").exists()  # nothing created before every check passed


def test_checkpoint_with_nan_weights_is_refused(tmp_path, photos):
    """ckpt_nan_weights / nan_ckpt_paired_scores: no black images with exit status 0."""
    sd = random_dce().state_dict()
    sd["e_conv3.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    code, err = cli("--input_dir", photos, "--output_dir", tmp_path / "o", "--weights", tmp_path / "nan.pth")
    assert code == 2 and len(err) == 1 and "NaN/Inf" in err[0] and "e_conv3.weight" in err[0]
    assert not (tmp_path / "o" / "a.png").exists()
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    with pytest.raises(UserError, match="NaN/Inf"):
        run("--input_dir", pairs, "--result_dir", tmp_path / "res", "--weights", tmp_path / "nan.pth")


def test_nan_float_tiff_is_reported_and_skipped(tmp_path, weights):
    """nan_float_tiff: a float image with NaN pixels is an error for that file, the others are written."""
    src = tmp_path / "in"
    write_rgb(src / "ok.png", 16, 16, seed=1)
    a = np.full((12, 14), 0.2, np.float32)
    a[3, 4] = np.nan
    Image.fromarray(a, mode="F").save(src / "nan.tif")
    code, err = cli("--input_dir", src, "--output_dir", tmp_path / "out", "--weights", weights)
    assert code == 1 and any("nan.tif" in line and "NaN/Inf" in line for line in err)
    assert (tmp_path / "out" / "ok.png").exists() and not (tmp_path / "out" / "nan.tif").exists()


def test_non_finite_output_is_reported_not_written(tmp_path, photos, weights, monkeypatch):
    monkeypatch.setattr(lowlight_model.enhance_net_nopool, "final_image", lambda self, x: x * float("nan"))
    assert run("--input_dir", photos, "--output_dir", tmp_path / "out", "--weights", weights) == 1
    assert not (tmp_path / "out" / "a.png").exists()


def test_webp_and_gif_are_counted_not_silently_skipped(tmp_path, photos, weights, capsys):
    Image.new("RGB", (8, 8)).save(photos / "c.webp")
    Image.new("P", (8, 8)).save(photos / "sub" / "d.gif")
    assert run("--input_dir", photos, "--output_dir", tmp_path / "out", "--weights", weights) == 0
    err = capsys.readouterr().err
    assert "2 file(s) in formats that are not read" in err and "convert them to PNG" in err


def test_low_High_layout_is_not_silently_enhanced_as_a_folder(tmp_path, weights):
    """paired_low_High_falls_back: a near-paired layout names the expected spelling."""
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    (pairs / "high").rename(pairs / "High")
    with pytest.raises(UserError, match="High/.*low/high.*--mode folder"):
        run("--input_dir", pairs, "--output_dir", tmp_path / "res", "--weights", weights)


def _memory(path, slots=4):
    torch.save({"epoch": 1, "mem_key": torch.randn(slots, 512), "mem_vale": torch.rand(slots, 3),
                "mem_age": torch.zeros(slots), "mem_index": torch.zeros(slots)}, path)
    return path


@pytest.mark.parametrize("flags,needle", [(["--testing_top_k", "5"], "larger than the 4 slots"),  # mem_topk_huge
                                          (["--mem_size", "9000"], "--mem_size 9000 does not match")])  # mismatch
def test_memory_flags_must_fit_the_memory_checkpoint(tmp_path, weights, flags, needle):
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    mem = _memory(tmp_path / "mem.pth")
    with pytest.raises(UserError, match=needle):
        run("--input_dir", pairs, "--result_dir", tmp_path / "res", "--weights", weights, "--mem_weights", mem, *flags)


def test_text_file_as_memory_checkpoint_is_one_line(tmp_path, weights):
    """mem_text."""
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    (tmp_path / "mem.pth").write_text("hello\n")
    code, err = cli("--input_dir", pairs, "--result_dir", tmp_path / "res", "--weights", weights,
                    "--mem_weights", tmp_path / "mem.pth")
    assert code == 2 and len(err) == 1 and "mem.pth" in err[0]


def test_images_over_the_budget_are_tiled_automatically(tmp_path, weights, monkeypatch):
    """big_4000x3000_17GB_RSS: the budget, not the image, bounds the forward pass; result as whole-image."""
    src = tmp_path / "in"
    write_rgb(src / "big.png", 150, 210, seed=5, scale=0.3)
    tiles = []
    real = inference.enhance_tiled
    monkeypatch.setattr(inference, "enhance_tiled", lambda m, x, t, o: tiles.append(t) or real(m, x, t, o))
    assert run("--input_dir", src, "--output_dir", tmp_path / "whole", "--weights", weights) == 0
    assert tiles == []
    # 0.02 GB at 1200 bytes/pixel: tiles of sqrt(16666) - 16 = 113 pixels
    assert run("--input_dir", src, "--output_dir", tmp_path / "tiled", "--weights", weights,
               "--memory_budget", "0.02") == 0
    assert tiles == [113]
    a, b = (np.asarray(Image.open(tmp_path / d / "big.png"), int) for d in ("whole", "tiled"))
    assert np.abs(a - b).max() <= 1


def test_out_of_memory_image_is_reported_and_skipped(tmp_path, weights, monkeypatch):
    """big_image_OOM_traceback: the image that does not fit fails alone, after retrying with tiles."""
    src = tmp_path / "in"
    write_rgb(src / "big.png", 200, 300, seed=5, scale=0.3)
    write_rgb(src / "small.png", 20, 20, seed=6, scale=0.3)
    real = lowlight_model.enhance_net_nopool.final_image
    sizes = []

    def limited(self, x):
        sizes.append(x.shape[-2] * x.shape[-1])
        if x.shape[-2] * x.shape[-1] > 10_000:
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(self, x)

    monkeypatch.setattr(lowlight_model.enhance_net_nopool, "final_image", limited)
    code, err = cli_inprocess(["--input_dir", src, "--output_dir", tmp_path / "out", "--weights", weights])
    assert code == 1 and "big.png" in err and "out of memory" in err
    assert (tmp_path / "out" / "small.png").exists() and not (tmp_path / "out" / "big.png").exists()
    assert 60_000 in sizes and min(sizes[1:]) < 60_000  # whole image first, then tiles


def cli_inprocess(argv):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run(*argv)
    return code, err.getvalue()


def test_memory_flags_without_a_memory_are_refused(tmp_path, weights):
    pairs = make_lol_v1(tmp_path / "eval", n=2)
    with pytest.raises(UserError, match="--testing_top_k applies only with --mem_weights"):
        run("--input_dir", pairs, "--result_dir", tmp_path / "res", "--weights", weights, "--testing_top_k", "2")


@pytest.mark.parametrize("content,needle", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 320017\n", "git lfs pull"),  # ckpt_lfs_pointer
    (b"<!DOCTYPE html><html></html>", "HTML"),                                                         # ckpt_html
    (b'{"state_dict": {}}', "text file"),                                                             # ckpt_json
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "an image"),                                                     # ckpt_png
    (bytes(range(7, 240)), "not a zip or pickle"),                                                    # ckpt_rand
])
def test_non_checkpoints_say_what_they_are(tmp_path, photos, content, needle):
    (tmp_path / "c.pth").write_bytes(content)
    code, err = cli("--input_dir", photos, "--output_dir", tmp_path / "o", "--weights", tmp_path / "c.pth")
    assert code == 2 and len(err) == 1 and needle in err[0] and "weights_only" not in err[0]

"""lowlight_test.py --input VIDEO: frames equal images, size/rate/count kept, atomic output, one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import lowlight_test
import video
from helpers import ROOT, random_dce, run_cli_in_process
from network.curves import apply_curves
from utils.video_io import VideoReader, open_writer

FPS = 12.5


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(random_dce(std=0.05).state_dict(), path)
    return str(path)


def clip_frames(n: int = 8, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Dark, smooth frames of a slowly moving scene, with noise (uint8 HxWx3 RGB)."""
    rng = np.random.default_rng(0)
    base = rng.random((h // 8 + 3, w // 8 + 3, 3))
    big = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((w + 3 * n, h), Image.BILINEAR), np.float32)
    return [np.clip(big[:, 3 * t:3 * t + w] * 0.25 + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
            for t in range(n)]


def write_clip(path, frames, fourcc: str, fps: float = FPS) -> str:
    h, w = frames[0].shape[:2]
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    writer, code = open_writer(str(path), (fourcc,), fps, (w, h))
    assert code == fourcc
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    return str(path)


def read_all(path) -> tuple[list[np.ndarray], object]:
    with VideoReader(str(path)) as r:
        return list(r), r.info


def run(*argv):
    return lowlight_test.main([*map(str, argv), "--device", "cpu"])


def cli(*argv):
    code, err, _ = run_cli_in_process(lowlight_test.main, [*map(str, argv), "--device", "cpu"])
    return code, err


def test_each_frame_equals_that_frame_enhanced_as_an_image(tmp_path, weights):
    clip = write_clip(tmp_path / "in" / "clip.mkv", clip_frames(), "FFV1")  # lossless in and out
    assert run("--input", clip, "--output_dir", tmp_path / "out", "--weights", weights) == 0
    decoded, info = read_all(clip)
    out, out_info = read_all(tmp_path / "out" / "clip.mkv")
    assert (out_info.width, out_info.height, out_info.fps, out_info.frames) == (64, 48, FPS, 8) == (
        info.width, info.height, info.fps, info.frames)
    assert len(out) == 8
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for t, f in enumerate(decoded):
        Image.fromarray(f).save(frames_dir / f"{t}.png")
    assert run("--input_dir", frames_dir, "--output_dir", tmp_path / "images", "--weights", weights) == 0
    for t, f in enumerate(out):
        assert np.array_equal(f, np.asarray(Image.open(tmp_path / "images" / f"{t}.png"))), t
    assert sorted(os.listdir(tmp_path / "out")) == ["clip.mkv"]  # no temporary file left


@pytest.mark.parametrize("name,fourcc,out_name,codec", [("a.mp4", "mp4v", "a.mp4", "FMP4"),
                                                        ("a.avi", "MJPG", "a.avi", "MJPG"),
                                                        ("a.wmv", "WMV2", "a.mp4", "FMP4")])  # fallback container
def test_size_rate_and_count_are_kept_in_the_container_of_the_input(tmp_path, weights, name, fourcc, out_name, codec):
    clip = write_clip(tmp_path / name, clip_frames(5, 40, 56), fourcc, fps=24)
    code, err = cli("--input", clip, "--output_dir", tmp_path / "out", "--weights", weights)
    assert code == 0, err
    frames, info = read_all(tmp_path / "out" / out_name)
    assert (info.width, info.height, info.frames, len(frames), info.fourcc) == (56, 40, 5, 5, codec)
    assert info.fps == pytest.approx(read_all(clip)[1].fps, abs=1e-3)  # as declared (ASF reads 24 as 23.976)


def test_an_existing_output_is_replaced_only_when_the_new_one_is_complete(tmp_path, weights, monkeypatch):
    clip = write_clip(tmp_path / "clip.avi", clip_frames(6), "MJPG")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.avi").write_bytes(b"previous result")
    calls = []

    def interrupted(self, frame):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C (SIGTERM raises its subclass) in the middle of the video
        return frame

    monkeypatch.setattr(video.FrameEnhancer, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("--input", clip, "--output_dir", out, "--weights", weights)
    assert sorted(os.listdir(out)) == ["clip.avi"] and (out / "clip.avi").read_bytes() == b"previous result"
    monkeypatch.undo()
    assert run("--input", clip, "--output_dir", out, "--weights", weights) == 0
    assert len(read_all(out / "clip.avi")[0]) == 6 and sorted(os.listdir(out)) == ["clip.avi"]


def test_a_killed_runs_temporary_file_is_removed_at_the_next_start(tmp_path, weights):
    clip = write_clip(tmp_path / "clip.mp4", clip_frames(3), "mp4v")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".tmp-clip.mp4.abcd1234.mp4"
    stale.write_bytes(b"half")
    (out / ".tmp-other.mp4.abcd1234.mp4").write_bytes(b"not ours")
    assert run("--input", clip, "--output_dir", out, "--weights", weights) == 0
    assert sorted(os.listdir(out)) == [".tmp-other.mp4.abcd1234.mp4", "clip.mp4"]


def test_unreadable_video_is_one_line_and_creates_nothing(tmp_path, weights):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "lowlight_test.py", "--input", str(bad), "--output_dir", str(out),
                        "--weights", weights, "--device", "cpu"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {bad}: cannot read video (not a video, or a codec OpenCV's "
                                             f"FFmpeg cannot decode); convert it, e.g. to MP4 (H.264)"]
    assert not out.exists()


@pytest.mark.parametrize("problem", ["folder_in_the_way", "image_flag", "no_encoder", "torchrun"])
def test_bad_video_runs_are_one_line(tmp_path, weights, monkeypatch, problem):
    clip = write_clip(tmp_path / "clip.avi", clip_frames(3), "MJPG")
    out = tmp_path / "out"
    extra, needle = [], ""
    if problem == "folder_in_the_way":
        (out / "clip.avi").mkdir(parents=True)
        needle = "is a folder where the result must go"
    elif problem == "image_flag":
        extra, needle = ["--format", "png"], "--format applies to images"
    elif problem == "no_encoder":
        monkeypatch.setattr("utils.video_io.VIDEO_CODECS", {".avi": ("zzzz",)})
        needle = "has no encoder for zzzz in .avi"
    else:
        monkeypatch.setenv("WORLD_SIZE", "2")
        needle = "one process"
    monkeypatch.setattr(lowlight_test, "_load_model", lambda *a: pytest.fail("checked after the model was loaded"))
    code, err = cli("--input", clip, "--output_dir", out, "--weights", weights, *extra)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    left = sorted(os.listdir(out)) if out.exists() else []
    assert left in ([], ["clip.avi"]) and not (out / "clip.avi").is_file()


def test_temporal_average_of_the_curve_maps(weights):
    """FrameEnhancer's temporal option (benchmarks/flicker.py; not a flag, docs/video.md says why):
    α·previous + (1 − α)·own maps, the first frame its own maps, tiled or not; α 0 is the image path."""
    from lowlight_model import load_enhancer

    model = load_enhancer("auto", weights)
    frames = clip_frames(3)
    alpha = 0.6
    got = video.FrameEnhancer(model, torch.device("cpu"), temporal=alpha)
    tiled = video.FrameEnhancer(model, torch.device("cpu"), temporal=alpha, tile=24)  # the maps stitched
    x = [torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255 for f in frames]
    with torch.no_grad():
        maps = [model.net(xi)[2] for xi in x]
    state = maps[0]
    for t in range(3):
        state = state if t == 0 else alpha * state + (1 - alpha) * maps[t]
        expect = apply_curves(x[t], state).clamp(0, 1)
        assert torch.allclose(got.enhance_tensor(frames[t]), expect, atol=2e-5), t
        assert torch.allclose(tiled.enhance_tensor(frames[t]), expect, atol=2e-5), t
    per_frame = video.FrameEnhancer(model, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(per_frame.enhance_tensor(frames[1]), model(x[1]).clamp(0, 1))

"""Video reading and writing through OpenCV's video I/O (its bundled FFmpeg): RGB uint8 frames, atomic output.

* :class:`VideoReader` opens a video (one line naming the file when it cannot: not a video, a codec OpenCV's
  FFmpeg cannot decode, no decodable frame) and yields its frames as uint8 HxWx3 RGB arrays.
* :func:`output_plan` picks the output's container and codec from the input's extension
  (:data:`VIDEO_CODECS`: the same container, ``mp4v`` for .mp4/.m4v/.mov, ``MJPG`` for .avi, lossless
  ``FFV1`` for .mkv; any other container is written as ``<stem>.mp4`` with ``mp4v``), each with fallbacks tried
  in order when OpenCV has no encoder for the first; :func:`probe_writer` proves one opens before any work.
* :func:`video_writer` writes into a temporary file beside the target (:func:`utils.fs.atomic_path`) and moves
  it into place only once every frame is written and the file reads back with that many frames: an error,
  Ctrl-C or SIGTERM leaves nothing half-written (the temporary file of a SIGKILLed run is removed at the next
  start, :func:`remove_stale`).

Audio is not read, so an output holds the video stream alone. Nothing here shells out to an ``ffmpeg`` binary.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from utils.errors import UserError
from utils.fs import atomic_path, check_writable_dir, find_blocker, temp_key, temp_target

#: Extensions read as videos (lower case).
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg")
#: Output container (the input's extension) → FourCC codes tried in order.
VIDEO_CODECS = {".mp4": ("mp4v",), ".m4v": ("mp4v",), ".mov": ("mp4v",), ".avi": ("MJPG", "XVID"),
                ".mkv": ("FFV1", "mp4v")}
#: Where an input's container is not in :data:`VIDEO_CODECS`.
FALLBACK_CONTAINER = ".mp4"
#: Frame rate written when the input declares none (some streams do not).
DEFAULT_FPS = 25.0


def is_video_file(path: str) -> bool:
    """True if ``path`` ends with one of :data:`VIDEO_EXTENSIONS` (case-insensitive)."""
    return path.lower().endswith(VIDEO_EXTENSIONS)


@functools.cache
def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover (a requirement)
        raise UserError("videos are read and written through OpenCV: pip install opencv-python-headless") from e
    return cv2


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """OpenCV's and FFmpeg's own log lines silenced (a failure is reported as one line by the caller)."""
    cv2 = _cv2()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET, read when FFmpeg first opens a file
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


@dataclass(frozen=True)
class VideoInfo:
    """What the input declares: frame size (after any rotation OpenCV applies), frames per second (``fps_known``
    False: none declared, :data:`DEFAULT_FPS` used), frame count (0: not declared), its FourCC."""

    width: int
    height: int
    fps: float
    frames: int
    fourcc: str
    fps_known: bool = True


class VideoReader:
    """The frames of the video at ``path`` as uint8 HxWx3 RGB arrays (iterate once). Opening reads the first
    frame, so an unreadable file fails here, with one line naming it."""

    def __init__(self, path: str) -> None:
        cv2 = _cv2()
        self.path = path
        if not os.path.isfile(path):
            raise UserError(f"{path}: video not found; check the path")
        with _quiet():
            cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
            ok, first = cap.read() if cap.isOpened() else (False, None)
        if not cap.isOpened():
            raise UserError(f"{path}: cannot read video (not a video, or a codec OpenCV's FFmpeg cannot decode); "
                            f"convert it, e.g. to MP4 (H.264)")
        if not ok or first is None:
            cap.release()
            raise UserError(f"{path}: no frame could be decoded (empty, truncated, or an unknown codec); replace it")
        self._cap, self._first = cap, first
        fps = cap.get(cv2.CAP_PROP_FPS)
        known = math.isfinite(fps) and fps > 0
        code = int(cap.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
        fourcc = "".join(chr((code >> 8 * k) & 0xFF) for k in range(4)).strip("\x00")
        frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.info = VideoInfo(first.shape[1], first.shape[0], fps if known else DEFAULT_FPS,
                              int(frames) if math.isfinite(frames) and frames > 0 else 0, fourcc, known)

    def __iter__(self) -> Iterator[np.ndarray]:
        cv2 = _cv2()
        frame, self._first = self._first, None
        if frame is None:
            raise RuntimeError("VideoReader: its frames were already read")
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            with _quiet():
                ok, frame = self._cap.read()
            frame = frame if ok else None

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class OutputPlan:
    """Where and how an enhanced video is written: ``path``, the FourCC codes tried in order."""

    path: str
    fourccs: tuple[str, ...]


def output_plan(input_path: str, out_dir: str) -> OutputPlan:
    """The output of ``input_path`` in ``out_dir``: the same file name and container where
    :data:`VIDEO_CODECS` knows it, else ``<stem>.mp4``."""
    name = os.path.basename(input_path)
    stem, ext = os.path.splitext(name)
    if ext.lower() in VIDEO_CODECS:
        return OutputPlan(os.path.join(out_dir, name), VIDEO_CODECS[ext.lower()])
    return OutputPlan(os.path.join(out_dir, stem + FALLBACK_CONTAINER), VIDEO_CODECS[FALLBACK_CONTAINER])


def check_target(plan: OutputPlan, input_path: str) -> None:
    """Refuse an output that is the input or a folder, or whose folder cannot be made (one line naming the path);
    remove the temporary files a killed run left for this target. An existing output file is replaced (as images
    are), atomically."""
    path = plan.path
    if os.path.realpath(path) == os.path.realpath(input_path):
        raise UserError(f"{path} is the input video and would be overwritten; choose another --output_dir")
    if os.path.isdir(path):
        raise UserError(f"{path} is a folder where the result must go; move it or choose another --output_dir")
    folder = os.path.dirname(path) or "."
    blocker = find_blocker(folder)
    if blocker:
        raise UserError(f"{blocker} is a file where the folder {folder} must go; move it or choose another "
                        f"--output_dir")
    check_writable_dir(folder, "--output_dir", create=True)
    remove_stale(path)


def remove_stale(path: str) -> None:
    """Remove the temporary files of ``path`` that a killed run left in its folder."""
    folder, key = os.path.dirname(path) or ".", temp_key(os.path.basename(path))
    for f in os.listdir(folder):
        if temp_target(f) == key:
            os.remove(os.path.join(folder, f))


class _Writer:
    def __init__(self, writer, path: str) -> None:
        self._writer, self.path, self.frames = writer, path, 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 HxWx3 RGB frame of the size the writer was opened with."""
        self._writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        self.frames += 1


def open_writer(path: str, fourccs: tuple[str, ...], fps: float, size: tuple[int, int]):
    """An opened ``cv2.VideoWriter`` for ``path`` (its extension picks the container) with the first of
    ``fourccs`` that OpenCV can encode, and that code; (None, None) when none opens."""
    cv2 = _cv2()
    for code in fourccs:
        with _quiet():
            writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*code), fps, size)
        if writer.isOpened():
            return writer, code
        writer.release()
    return None, None


def probe_writer(plan: OutputPlan, fps: float, size: tuple[int, int]) -> str:
    """The codec of ``plan.fourccs`` that OpenCV opens a writer with for ``plan.path``'s container, proved by
    opening one on a temporary file beside the target (removed); a :class:`UserError` when none opens."""
    with contextlib.suppress(_Probed), atomic_path(plan.path) as tmp:
        writer, code = open_writer(tmp, plan.fourccs, fps, size)
        if writer is not None:
            writer.release()
        raise _Probed  # nothing is moved into place: the temporary file is removed
    if code is None:
        raise _no_encoder(plan)
    return code


class _Probed(Exception):
    """Ends :func:`probe_writer`'s block so that its temporary file is removed."""


def _no_encoder(plan: OutputPlan) -> UserError:
    ext = os.path.splitext(plan.path)[1]
    return UserError(f"{plan.path}: OpenCV's FFmpeg has no encoder for {'/'.join(plan.fourccs)} in {ext}; "
                     f"convert the input to MP4 or AVI")


@contextlib.contextmanager
def video_writer(plan: OutputPlan, fps: float, size: tuple[int, int]) -> Iterator[_Writer]:
    """A writer of frames of ``size`` (width, height) at ``fps`` into ``plan.path``, moved into place only when the
    block ends without an error and the file reads back with as many frames as were written; otherwise nothing
    is left. The codec is the first of ``plan.fourccs`` that opens (``.codec`` on the writer)."""
    cv2 = _cv2()
    with atomic_path(plan.path) as tmp:
        writer, code = open_writer(tmp, plan.fourccs, fps, size)
        if writer is None:
            raise _no_encoder(plan)
        out = _Writer(writer, plan.path)
        out.codec = code
        try:
            yield out
        finally:
            writer.release()
        _check_written(tmp, plan.path, out.frames)


def _check_written(tmp: str, path: str, frames: int) -> None:
    """The file at ``tmp`` must read back with ``frames`` frames (a full disk or a failed encoder writes fewer)."""
    cv2 = _cv2()
    with _quiet():
        cap = cv2.VideoCapture(tmp, cv2.CAP_FFMPEG)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
        cap.release()
    if count != frames:
        raise UserError(f"cannot write {path}: the encoded file holds {max(count, 0)} of {frames} frames (disk full?); "
                        f"free space or choose another --output_dir")

"""File-system helpers for every writer: atomic writes, the temporary-file names, the write probe.

* :func:`atomic_write` / :func:`atomic_path` — write beside the target, then ``os.replace``: a file is
  never half-written, and gets the permissions of a plain ``open()`` (``0o666`` less the umask).
* The temporary names, one scheme for every writer: ``.tmp-<target name>.<8 random characters><target
  extension>`` (hidden, never listed as an image; a checkpoint's ends in ``.pth``). :func:`temp_target`
  recognises one a killed run left behind and names its target; :data:`TMP_GLOB` matches them all.
* :func:`check_writable_dir` proves a folder can be written (one line naming the path otherwise);
  :func:`find_blocker` finds a file standing where a folder must go.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from typing import IO, Any, Iterator

from utils.errors import UserError

TMP_PREFIX = ".tmp-"
TMP_GLOB = TMP_PREFIX + "*"  # every temporary file of this scheme (glob.glob skips it unless asked: a dot file)
_TEMP_NAME = re.compile(r"\.tmp-(.+)\.[a-z0-9_]{8}(\.[^.]*)?")  # the 8 characters: tempfile.mkstemp's


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: setting it to read it is not thread-safe (images are written by threads)


NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows)


def temp_key(name: str) -> str:
    """The form of the file name ``name`` that its temporary files carry: ``name`` itself, or, where the
    temporary name would pass :data:`NAME_MAX` bytes, its stem cut short plus ``~`` and 8 hex digits of its
    hash (so a 255-byte name can still be written atomically)."""
    ext = os.path.splitext(name)[1]
    room = NAME_MAX - len(TMP_PREFIX) - 1 - 8 - len(ext.encode())  # prefix, '.', mkstemp's 8, extension
    if len(name.encode()) <= room:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    stem = name.encode()[:room - len(ext.encode()) - 9].decode(errors="ignore")
    return f"{stem}~{digest}{ext}"


def temp_affixes(path: str) -> tuple[str, str]:
    """``(prefix, suffix)`` of the temporary files that replace ``path``: ``mkstemp`` adds the 8 random
    characters between them."""
    name = os.path.basename(path)
    return f"{TMP_PREFIX}{temp_key(name)}.", os.path.splitext(name)[1]


def temp_target(filename: str) -> str | None:
    """The file name that the temporary file ``filename`` (a base name) was written to replace (its
    :func:`temp_key`), or None when ``filename`` is not one of :func:`temp_affixes`'s."""
    found = _TEMP_NAME.fullmatch(filename)
    if not found or os.path.splitext(found.group(1))[1] != (found.group(2) or ""):
        return None
    return found.group(1)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield the path of a new empty temporary file in ``path``'s folder (created, so the name is ours);
    on success ``os.replace`` it onto ``path`` with the permissions of a plain ``open()`` (a symbolic link
    put in its place is moved as it is), on any failure remove it: ``path`` is never half-written (an
    old file stays as it was)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix, suffix = temp_affixes(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        if not os.path.islink(tmp):
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's private 0o600 -> what a plain open() gives
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", **open_kw: Any) -> Iterator[IO]:
    """``open(path, mode, **open_kw)`` through :func:`atomic_path`: the file appears whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kw) as f:
        yield f


def find_blocker(path: str) -> str | None:
    """The first existing ancestor-or-self of ``path`` that is not a folder (a file where a folder must
    go), if any."""
    parts = os.path.abspath(path).split(os.sep)
    for k in range(2, len(parts) + 1):
        p = os.sep.join(parts[:k])
        if os.path.lexists(p) and not os.path.isdir(p):
            return p
    return None


def check_writable_dir(path: str, what: str = "", create: bool = False) -> None:
    """Prove a file can be written in the folder ``path`` (or, if it does not exist yet, in its nearest
    existing parent, creating nothing unless ``create``). Raises a one-line :class:`UserError` naming
    ``path`` (after ``what``, e.g. the flag that gave it) otherwise."""
    label = f"{what} {path}" if what else path
    blocker = find_blocker(path)
    if blocker:
        raise UserError(f"{label}: {blocker} is a file, not a folder; move it or choose another folder")
    probe_dir = os.path.abspath(path)
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        while not os.path.isdir(probe_dir):
            probe_dir = os.path.dirname(probe_dir)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=probe_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError(f"{label} is not writable: cannot write in {probe_dir} ({e.strerror or e}); "
                        f"choose another folder") from e

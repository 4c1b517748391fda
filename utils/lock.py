"""One run per run folder: :class:`RunLock`, a lock file holding its owner's host, PID and start time.

The lock itself is ``fcntl.flock`` on the file (where available): the kernel releases it when the owner
exits, however it ends (``kill -9`` included), so a lock file left behind by a dead run is recognised as
stale and taken over with a note. The text in the file only names the owner in messages. Where ``flock``
is missing, or the owner ran on another host (a shared file system), the text decides: a PID that is
alive on this host holds the folder; another host's lock is refused and must be deleted by hand.
"""
from __future__ import annotations

import atexit
import json
import os
import socket
import time
from typing import Any

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX: the host/PID text alone
    fcntl = None

LOCK_NAME = ".run.lock"
_HELD: dict[str, "RunLock"] = {}  # folder -> the lock this process holds on it


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _read_owner(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    try:
        owner = json.loads(text) if text else None
    except ValueError:
        return {"host": "?", "pid": 0, "since": text[:40] or "?"}
    return owner if isinstance(owner, dict) else None


def describe(owner: dict[str, Any]) -> str:
    """``host H, PID P, since T`` of a lock file's owner."""
    return f"host {owner.get('host', '?')}, PID {owner.get('pid', '?')}, since {owner.get('since', '?')}"


def _try_flock(fd: int, shared: bool = False) -> bool:
    """True when the (non-blocking) lock was taken, or there is no ``flock`` here."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder(folder: str) -> dict[str, Any] | None:
    """The owner of a live lock on ``folder`` held by another process (a run in progress), or None;
    creates nothing."""
    if os.path.realpath(folder) in _HELD:  # this process's own, released when its next run takes it
        return None
    path = os.path.join(folder, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        owner = _read_owner(fd)
        if not _try_flock(fd, shared=True):
            return owner or {}
        return owner if owner and _foreign_live(owner) else None
    finally:
        os.close(fd)


def in_use(folder: str, owner: dict[str, Any]) -> UserError:
    """The one line that refuses a second run into ``folder``."""
    return UserError(f"{folder} is in use by another run ({describe(owner)}): wait for it to end or choose "
                     f"another folder")


def check_free(folder: str) -> None:
    """:func:`in_use` when a run holds ``folder`` now; creates nothing."""
    owner = holder(folder)
    if owner is not None:
        raise in_use(folder, owner)


def _foreign_live(owner: dict[str, Any]) -> bool:
    """Whether an owner whose flock is free may still run: another host (flock may not reach across a
    shared file system), or a live PID of this host where there is no flock."""
    if owner.get("host") != socket.gethostname():
        return True
    return fcntl is None and owner.get("pid") != os.getpid() and _pid_alive(int(owner.get("pid") or 0))


class RunLock:
    """``with RunLock(folder):`` — hold ``folder/.run.lock`` for one run (or :meth:`acquire` /
    :meth:`release`). A second run into the folder gets a one-line :class:`UserError` naming the first
    (host, PID, since when); a lock file left by a dead process of this host is taken over and
    :attr:`recovered` says so (a line for the run's log). Released by :meth:`release`, at the
    interpreter's exit, and by the kernel when the process dies."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.fd: int | None = None
        self.pid: int | None = None
        self.recovered: str | None = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "RunLock":
        key = os.path.realpath(self.folder)
        if key in _HELD:  # an earlier run of this process that ended without closing (runs never nest)
            _HELD[key].release()
        try:
            os.makedirs(self.folder, exist_ok=True)
            fd = self._open_locked()
        except OSError as e:
            raise UserError(f"cannot write in {self.folder} ({e.strerror or e}); choose another folder") from None
        owner = _read_owner(fd)
        if owner and _foreign_live(owner):
            os.close(fd)
            raise UserError(f"{self.folder} holds a lock of another run ({describe(owner)}): if that run has ended, "
                            f"delete {self.path}; else wait for it or choose another folder")
        if owner:
            self.recovered = (f"took over the lock {self.path} of a run that ended without releasing it "
                              f"({describe(owner)})")
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
        os.fsync(fd)
        self.fd, self.pid = fd, os.getpid()
        _HELD[key] = self
        atexit.register(self.release)
        return self

    def _open_locked(self) -> int:
        """The lock file, flocked; retried when another process removed it between our open and lock."""
        tries = 5  # another process's check (holder) shares the lock for an instant: retry briefly
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_flock(fd):
                owner = _read_owner(fd) or {}
                os.close(fd)
                tries -= 1
                if not tries:
                    raise in_use(self.folder, owner)
                time.sleep(0.1)
                continue
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def release(self) -> None:
        """Remove the lock file and unlock (only in the process that took it; a no-op when not held)."""
        if self.fd is None or self.pid != os.getpid():
            return
        atexit.unregister(self.release)
        _HELD.pop(os.path.realpath(self.folder), None)
        try:
            os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)  # closing the file releases the flock
        self.fd = None

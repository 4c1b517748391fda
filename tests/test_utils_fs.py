"""utils/fs.py: atomic writes, the temporary-file names, the write probe."""
from __future__ import annotations

import fnmatch
import os

import pytest

import utils.fs as fs
from utils.errors import UserError
from utils.fs import atomic_path, atomic_write, check_writable_dir, find_blocker, temp_target


def test_atomic_write_gives_a_plain_files_permissions(tmp_path, monkeypatch):
    monkeypatch.setattr(fs, "_UMASK", 0o022)  # the umask read at import, whatever the machine's is
    with atomic_write(str(tmp_path / "a.json"), "w") as f:
        f.write("{}")
        (tmp,) = os.listdir(tmp_path)
        assert tmp.startswith(".tmp-a.json.") and tmp.endswith(".json") and fs.temp_target(tmp) == "a.json"
        assert os.stat(tmp_path / tmp).st_mode & 0o777 == 0o600  # mkstemp's private mode while it is written
    assert os.stat(tmp_path / "a.json").st_mode & 0o777 == 0o644  # a plain open's 0o666 less the umask
    assert sorted(os.listdir(tmp_path)) == ["a.json"]


def test_atomic_write_replaces_on_success_and_cleans_up_on_failure(tmp_path):
    path = tmp_path / "report.txt"
    with atomic_write(str(path), "w") as f:
        f.write("first")
        assert not path.exists()  # nothing visible until the write is complete
    assert path.read_text() == "first"
    with pytest.raises(ValueError):
        with atomic_write(str(path), "w") as f:
            f.write("half")
            raise ValueError("disk full")
    assert path.read_text() == "first" and sorted(os.listdir(tmp_path)) == ["report.txt"]


@pytest.mark.parametrize("target", ["a.png", "latest.pth", "Makefile", "x.tar.gz", ".hidden.json"])
def test_temporary_names_name_their_target(tmp_path, target):
    with atomic_path(str(tmp_path / target)) as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(".tmp-" + target + ".") and name.endswith(os.path.splitext(target)[1])
        assert temp_target(name) == target and fnmatch.fnmatch(name, fs.TMP_GLOB)
    assert sorted(os.listdir(tmp_path)) == [target]


@pytest.mark.parametrize("name", ["a.png", ".tmp-a.png", ".a.png.abcdefgh.tmp", ".tmp-a.png.ABCDEFGH.png",
                                  ".tmp-a.png.abcdefgh.jpg", ".tmp-a.png.abcdefg.png", "x.tmp-a.png.abcdefgh.png"])
def test_other_names_are_not_temporary_files(name):
    assert temp_target(name) is None


def test_atomic_path_moves_a_link_as_it_is(tmp_path):
    src = tmp_path / "src.png"
    src.write_bytes(b"x")
    os.chmod(src, 0o600)
    with atomic_path(str(tmp_path / "out" / "dst.png")) as tmp:  # the folder is created
        os.remove(tmp)
        os.symlink(src, tmp)
    assert os.readlink(tmp_path / "out" / "dst.png") == str(src) and os.stat(src).st_mode & 0o777 == 0o600


def test_find_blocker_finds_the_file_where_a_folder_must_go(tmp_path):
    (tmp_path / "a").write_text("x")
    assert find_blocker(str(tmp_path / "a" / "b" / "c")) == str(tmp_path / "a")
    assert find_blocker(str(tmp_path / "a")) == str(tmp_path / "a")
    assert find_blocker(str(tmp_path / "new" / "b")) is None


def test_check_writable_dir_names_the_path_and_creates_only_when_asked(tmp_path, monkeypatch):
    check_writable_dir(str(tmp_path / "new" / "sub"))  # probed in tmp_path, nothing created
    assert sorted(os.listdir(tmp_path)) == []
    check_writable_dir(str(tmp_path / "new" / "sub"), create=True)
    assert (tmp_path / "new" / "sub").is_dir() and not os.listdir(tmp_path / "new" / "sub")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match=f"^--out {tmp_path}/f/g: {tmp_path}/f is a file, not a folder; "):
        check_writable_dir(str(tmp_path / "f" / "g"), "--out")

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fs.tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=f"^{tmp_path}/x is not writable: cannot write in {tmp_path} "
                                        r"\(Permission denied\); choose another folder$"):
        check_writable_dir(str(tmp_path / "x"))


def test_a_255_byte_name_is_written_atomically_and_its_leftovers_recognised(tmp_path, monkeypatch):
    """probe names_unicode_space_long: the temporary name of a valid 255-byte file name was longer than the
    file system allows ('File name too long'); it now carries a shortened, hashed form of the name."""
    name = "é" * 100 + "x" * 51 + ".png"  # 255 bytes in UTF-8
    assert len(name.encode()) == fs.NAME_MAX
    target = tmp_path / name
    with atomic_write(str(target), "wb") as f:
        tmp = os.path.basename(f.name)
        assert len(tmp.encode()) <= fs.NAME_MAX and temp_target(tmp) == fs.temp_key(name) != name
        f.write(b"data")
    assert target.read_bytes() == b"data" and os.listdir(tmp_path) == [name]
    other = "é" * 100 + "x" * 50 + "y.png"  # same length, another name: another key
    assert fs.temp_key(other) != fs.temp_key(name) and fs.temp_key("short.png") == "short.png"

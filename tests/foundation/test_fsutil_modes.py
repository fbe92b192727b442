"""Directories and lock files get explicit modes whatever the umask, and a symlink planted in a
lock file's place never makes the daemon create or open a file elsewhere."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

import pytest

from dra_framework.fsutil import make_dirs, open_lock_file, write_json_atomic


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_make_dirs_modes_under_umask_000(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    with umask(0):
        make_dirs(existing / "a" / "b", 0o750)
        write_json_atomic(tmp_path / "state" / "x" / "f.json", {"k": 1})
    assert mode(existing) == 0o755  # not ours to change
    assert mode(existing / "a") == mode(existing / "a" / "b") == 0o750
    assert mode(tmp_path / "state") == mode(tmp_path / "state" / "x") == 0o700
    assert mode(tmp_path / "state" / "x" / "f.json") == 0o600


def test_lock_file_created_0600_under_umask_000(tmp_path):
    with umask(0):
        fd = open_lock_file(str(tmp_path / "a.lock"))
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    assert mode(tmp_path / "a.lock") == 0o600


@pytest.mark.parametrize("dangling", [True, False])
def test_planted_symlink_is_replaced_never_followed(tmp_path, dangling, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    if not dangling:
        target.write_text("keep")
        os.chmod(target, 0o644)
    lock = tmp_path / "serialize-07.lock"
    lock.symlink_to(target)
    fd = open_lock_file(str(lock))
    os.close(fd)
    assert stat.S_ISREG(os.lstat(lock).st_mode) and mode(lock) == 0o600
    if dangling:
        assert not target.exists()  # nothing created through the link
    else:
        assert target.read_text() == "keep" and mode(target) == 0o644
    assert "is a symlink" in caplog.text


def test_lock_path_that_is_not_a_file_is_an_error(tmp_path):
    fifo = tmp_path / "checkpoint.lock"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as e:
        open_lock_file(str(fifo))
    assert e.value.errno == errno.EINVAL and str(fifo) in str(e.value)

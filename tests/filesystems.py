"""Real file systems that are full or read-only, for the storage fault tests.

A small tmpfs is mounted on a test folder: filling it gives the real ENOSPC ("No space left on device") and
remounting it read-only gives the real EROFS ("Read-only file system") - what a node sees when its disk fills up
or the kernel remounts a failing disk read-only. Both bind for root too (``chmod 0555`` does not: root writes
anyway). Mounting needs root with CAP_SYS_ADMIN; where that is missing the test is skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["fill", "read_only", "small_filesystem"]


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)


@contextmanager
def small_filesystem(folder: Path, size_kib: int = 256) -> Iterator[Path]:
    """A tmpfs of `size_kib` KiB mounted on `folder` (created), unmounted on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a test file system needs root")
    result = _mount("-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(folder))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30, check=False)


def read_only(mount_point: Path) -> None:
    """Remount the tmpfs at `mount_point` read-only (EROFS for every write, root's too)."""
    result = _mount("-o", "remount,ro", str(mount_point))
    if result.returncode != 0:
        raise RuntimeError(f"cannot remount {mount_point} read-only: {result.stderr.strip()}")


def fill(mount_point: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system at `mount_point` until at most `leave_bytes` (rounded up to a block) are free; returns
    the ballast file (delete it to free the space again)."""
    ballast = mount_point / "ballast"
    block = os.statvfs(mount_point).f_frsize
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while (free := os.statvfs(mount_point).f_bavail * block) > leave_bytes + block:
            os.write(fd, b"\0" * min(free - leave_bytes - block, 1 << 20))
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return ballast

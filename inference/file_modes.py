"""Private files and folders: created with configured permission bits, exactly, whatever the process umask.

Everything sarcoscreen keeps of a patient - spool, quarantine, outputs, the SQLite database, the log - is created
through `FileModes` (``[storage] file_mode`` / ``dir_mode``, 0600 and 0700 by default). The process umask is never
changed (it is process-wide: it would change what other threads and libraries create); instead each file and folder
is created with its mode (``os.open(..., mode)``, ``os.mkdir(path, mode)``) and set to it exactly with
``fchmod``/``chmod`` afterwards, since the umask may have removed bits the configuration grants. Files a library
creates by name (SQLite's database, the log handler's file) are created here first, or set right after.

`FileModes.atomic` writes a file under a temporary name in the same folder and renames it into place, so a reader
never sees half a file; when writing fails (a full disk: ENOSPC) the temporary file is removed and
`FileWriteError` names the file and the reason. This module sits in `sarcoscreen.inference`, the package every
other imports, so the node, the report writers and the database share it; it imports nothing of sarcoscreen.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, overload

__all__ = ["PRIVATE", "FileModes", "FileWriteError", "parse_mode"]


class FileWriteError(OSError):
    """A file could not be written (full disk, read-only file system...); the message names the file (not its
    folder) and the reason, `errno` is the cause's (ENOSPC, EROFS...)."""

    def __init__(self, message: str, error_number: int | None) -> None:
        super().__init__(message)
        self.errno = error_number


def parse_mode(text: str) -> int:
    """Permission bits from octal text: ``"0600"``, ``"600"`` or ``"0o600"``. Raises `ValueError`."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or any(c not in "01234567" for c in digits):
        raise ValueError(f"{text!r} is not an octal mode such as \"0600\"")
    mode = int(digits, 8)
    if mode > 0o777:
        raise ValueError(f"{text!r} is not a permission mode (at most 0777; no setuid, setgid or sticky bits)")
    return mode


@dataclass(frozen=True)
class FileModes:
    """Permission bits of the files and folders sarcoscreen creates."""

    file: int = 0o600
    directory: int = 0o700

    def make_dirs(self, path: Path) -> Path:
        """Create `path` and its missing parents with the folder mode; folders that exist are left as they are.

        Raises `OSError` (e.g. EROFS, EACCES) when a missing folder cannot be created."""
        missing: list[Path] = []
        current = path
        while not current.is_dir():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for folder in reversed(missing):
            try:
                os.mkdir(folder, self.directory)
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue  # another thread or process made it meanwhile: theirs, with the same modes
            os.chmod(folder, self.directory)
        return path

    def apply(self, path: Path) -> None:
        """Set `path` (a file or folder created by a library) to its configured mode."""
        os.chmod(path, self.directory if path.is_dir() else self.file)

    def create_file(self, path: Path, *, exclusive: bool = False) -> int:
        """Open `path` for writing (created with the file mode, truncated if it exists) and return the descriptor.

        An existing file gets the configured mode too: it is sarcoscreen's own, being rewritten."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        if exclusive:
            flags |= os.O_EXCL
        fd = os.open(path, flags, self.file)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != self.file:
                os.fchmod(fd, self.file)
        except OSError:
            os.close(fd)
            raise
        return fd

    def touch(self, path: Path) -> bool:
        """Create `path` as an empty file with the file mode unless it exists; ``True`` when it was created."""
        try:
            fd = self.create_file(path, exclusive=True)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    @overload
    def open(self, path: Path, kind: Literal["binary"] = ..., *, newline: str | None = None) -> IO[bytes]: ...

    @overload
    def open(self, path: Path, kind: Literal["text"], *, newline: str | None = None) -> IO[str]: ...

    def open(self, path: Path, kind: Literal["binary", "text"] = "binary", *,
             newline: str | None = None) -> IO[bytes] | IO[str]:
        """`path` opened for writing, created with the file mode (UTF-8 for text)."""
        fd = self.create_file(path)
        if kind == "text":
            return os.fdopen(fd, "w", encoding="utf-8", newline=newline)
        return os.fdopen(fd, "wb")

    @overload
    def atomic(self, path: Path, kind: Literal["binary"] = ..., *, durable: bool = False,
               newline: str | None = None) -> AbstractContextManager[IO[bytes]]: ...

    @overload
    def atomic(self, path: Path, kind: Literal["text"], *, durable: bool = False,
               newline: str | None = None) -> AbstractContextManager[IO[str]]: ...

    def atomic(self, path: Path, kind: Literal["binary", "text"] = "binary", *, durable: bool = False,
               newline: str | None = None) -> AbstractContextManager[IO[bytes]] | AbstractContextManager[IO[str]]:
        """Context manager: write `path` under a temporary name, then rename it into place (see the module
        docstring). `durable` fsyncs the file before the rename. Raises `FileWriteError`."""
        return _write_atomically(self, path, kind, durable, newline)

    def write_bytes(self, path: Path, data: bytes, *, durable: bool = False) -> Path:
        with self.atomic(path, durable=durable) as handle:
            handle.write(data)
        return path

    def write_text(self, path: Path, text: str, *, durable: bool = False) -> Path:
        with self.atomic(path, "text", durable=durable) as handle:
            handle.write(text)
        return path


PRIVATE = FileModes()
"""0600 files, 0700 folders: only the account the node runs as reads them."""


@contextmanager
def _write_atomically(modes: FileModes, path: Path, kind: str, durable: bool,
                      newline: str | None) -> Iterator[IO[bytes] | IO[str]]:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with modes.open(temporary, kind, newline=newline) as handle:  # type: ignore[call-overload]
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        number = _errno(exc)
        reason = os.strerror(number) if number is not None else str(exc)
        raise FileWriteError(f"cannot write {path.name}: {reason}", number) from None
    except BaseException:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def _errno(exc: BaseException) -> int | None:
    """The errno of `exc` or of the error it was raised from (pydicom re-raises a write error as a new `OSError`
    naming the data element, without the errno)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None

"""Reading an operator's file safely: a regular file only, never blocking, with a size cap."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """A FIFO, device, socket or directory where a file was expected."""

    def __init__(self, path: Path, mode: int) -> None:
        kind = file_kind(mode)
        super().__init__(errno.EINVAL, f"it is a {kind}, not a regular file", str(path))


def file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def read_regular_file(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, or OSError (NotRegularFile for a FIFO, device or directory).

    Opened with O_NONBLOCK, so a FIFO without a writer cannot hang us between the check and the
    read, then checked with fstat on the open descriptor: the thing checked is the thing read.
    With `limit`, at most limit + 1 bytes are read: the caller sees the file is too large."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, mode)
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read() if limit is None else file.read(limit + 1)
    finally:
        os.close(fd)

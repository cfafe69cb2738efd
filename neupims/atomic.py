"""Atomic file writes: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from neupims.errors import NeupimsError


def _write_error(path: Path, exc: OSError) -> NeupimsError:
    """An OSError of writing ``path`` (a directory, a missing or read-only folder, a full
    disk) as one line naming the file: output paths are user input too."""
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        return NeupimsError(f"{path}: is a directory; expected a file path to write")
    return NeupimsError(f"{path}: cannot write the file: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", fsync: bool = True, **kw) -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on success fsync and rename it into place.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file. ``fsync=False`` skips the flush to disk: the
    rename is still atomic for readers and survives the writer being killed, only not a
    power loss (use it where the reader validates what it reads, e.g. the result store).
    An OSError of creating, flushing or renaming the file (not of the caller's code) is a
    NeupimsError naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        with os.fdopen(fd, mode, **kw) as fh:
            yield fh
            try:
                fh.flush()
                if fsync:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise _write_error(path, exc) from None
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise _write_error(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    with atomic_open(path, "w", fsync=fsync) as fh:
        fh.write(text)

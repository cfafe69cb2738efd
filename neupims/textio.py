"""Reading user files as text: every way a path can fail becomes one clear error line.

A path given by a user may be missing, a directory, unreadable, binary or in another
encoding. :func:`read_text` turns each of these into the project's own error (the
caller's class: ConfigError for YAML, TraceError for CSVs) whose message names the file
and what was expected, instead of an OSError or UnicodeDecodeError traceback.

Files are decoded as UTF-8; a leading byte-order mark (as spreadsheet programs write
it) is dropped.
"""

from __future__ import annotations

from pathlib import Path

from neupims.errors import NeupimsError


def _where(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    return f"line {line} (byte {offset})"


def read_text(path: str | Path, error: type[NeupimsError] = NeupimsError) -> str:
    """The UTF-8 text of ``path``; raise ``error`` naming the file otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory; expected a file") from None
    except PermissionError:
        raise error(f"{path}: permission denied; cannot read the file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: {_where(data, exc.start)}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
            "expected a text file"
        ) from None
    nul = data.find(b"\x00")
    if nul >= 0:
        raise error(f"{path}: {_where(data, nul)}: NUL byte; expected a text file")
    return text


__all__ = ["read_text"]

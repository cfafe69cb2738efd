"""Trace CSV read/write (format in the README, "Formats").

A trace is a list of :class:`TracedOp`: an op plus the ``layer`` it comes from. Reading
validates every row and reports the first bad one as ``FILE: line N: message``; line
numbers count the header as line 1, as an editor shows them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from neupims.atomic import atomic_open
from neupims.errors import TraceError
from neupims.ops import Op, op_columns, op_from_row
from neupims.textio import read_text


@dataclass(frozen=True)
class TracedOp:
    layer: str
    op: Op


def trace_columns() -> list[str]:
    return ["op", "layer", *op_columns()]


def write_trace(trace: Iterable[TracedOp], path: str | Path | None = None) -> str:
    """Write a trace as CSV (atomically when ``path`` is given); return the CSV text."""
    cols = trace_columns()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for t in trace:
        row = {"op": t.op.name, "layer": t.layer}
        for k, v in t.op.fields().items():
            row[k] = str(v).lower() if isinstance(v, bool) else v
        w.writerow(row)
    text = buf.getvalue()
    if path is not None:
        with atomic_open(path, "w", newline="") as fh:
            fh.write(text)
    return text


def read_trace(path: str | Path) -> list[TracedOp]:
    """Read and validate a trace CSV. Raises TraceError naming the file and line."""
    path = Path(path)
    return parse_trace(read_text(path, TraceError), str(path))


def parse_trace(text: str, source: str = "<trace>") -> list[TracedOp]:
    """Parse and validate trace CSV text; raise TraceError naming ``source`` and the line."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        return _parse_rows(reader, source)
    except csv.Error as exc:
        raise TraceError(f"{source}: line {reader.line_num}: malformed CSV: {exc}") from None


def _parse_rows(reader, source: str) -> list[TracedOp]:
    header = next((r for r in reader if any(c.strip() for c in r)), None)
    if header is None:
        raise TraceError(f"{source}: empty file; expected a header row starting with 'op'")
    header = [h.strip() for h in header]
    if "op" not in header:
        raise TraceError(
            f"{source}: line {reader.line_num}: header has no 'op' column (got {header})"
        )
    known = set(trace_columns())
    unknown = [h for h in header if h and h not in known]
    if unknown:
        raise TraceError(
            f"{source}: line {reader.line_num}: unknown column(s) {unknown}; known: {sorted(known)}"
        )
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise TraceError(f"{source}: line {reader.line_num}: duplicate column(s) {dup}")
    out: list[TracedOp] = []
    for row in reader:
        lineno = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise TraceError(
                f"{source}: line {lineno}: expected {len(header)} cells as in the header, got {len(row)}"
            )
        cells = dict(zip(header, row, strict=True))
        try:
            op = op_from_row(cells)
        except (ValueError, TypeError) as exc:
            raise TraceError(f"{source}: line {lineno}: {exc}") from None
        out.append(TracedOp(layer=cells.get("layer", "").strip(), op=op))
    if not out:
        raise TraceError(f"{source}: no op rows after the header")
    return out

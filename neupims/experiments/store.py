"""Result store: one JSON file per finished point under ``DIR/store/<key>.json``.

The key is the sha256 of the point's fully resolved configuration and the package version
(:func:`neupims.experiments.spec.point_key`), so a point is stored at most once, and a
changed configuration or version is a new point. Files are written atomically: a reader
(or a resumed run after SIGKILL) sees a whole record or none. ``results.csv`` is always
rebuilt from stored records, so each of its rows is in the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from neupims.atomic import atomic_open, atomic_write_text
from neupims.experiments.worker import STATUS_OK


class ResultStore:
    """Point records keyed by their store key, cached in memory after :meth:`load`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.records: dict[str, dict[str, Any]] = {}

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self) -> dict[str, dict[str, Any]]:
        """Read every record; unreadable files (never produced by atomic writes) are skipped."""
        self.records = {}
        if self.folder.is_dir():
            for f in sorted(self.folder.glob("*.json")):
                try:
                    rec = json.loads(f.read_text())
                except (OSError, ValueError):
                    continue
                if isinstance(rec, dict) and rec.get("key") == f.stem:
                    self.records[f.stem] = rec
        return self.records

    def put(self, record: dict[str, Any]) -> None:
        key = record["key"]
        # No fsync: the rename is atomic and survives SIGKILL; after a power loss a torn
        # file fails the key check in load() and the point is simply run again.
        text = json.dumps(record, indent=1, sort_keys=True)
        atomic_write_text(self.path(key), text, fsync=False)
        self.records[key] = record

    def finished(self, key: str) -> bool:
        rec = self.records.get(key)
        return rec is not None and rec.get("status") == STATUS_OK


def results_frame(points, records: dict[str, dict[str, Any]], metrics: list[str] | None):
    """One row per stored point, in sweep order: point, swept values, status, metrics, error."""
    if metrics is None:
        metrics = []
        for p in points:
            result = (records.get(p.key) or {}).get("result") or {}
            metrics += [m for m in result if m not in metrics]
    rows = []
    for p in points:
        rec = records.get(p.key)
        if rec is None:
            continue
        row: dict[str, Any] = {"point": p.index}
        for path, value in p.swept.items():
            row[path] = json.dumps(value) if isinstance(value, (list, dict)) else value
        row["status"] = rec["status"]
        result = rec.get("result") or {}
        for m in metrics:
            row[m] = result.get(m)
        row["error"] = rec.get("error") or ""
        row["elapsed_s"] = rec.get("elapsed_s")
        row["key"] = p.key
        rows.append(row)
    return pd.DataFrame(rows)


def write_results_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_open(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)

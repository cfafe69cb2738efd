"""The simpy timeline of one decode iteration and its Chrome-trace export.

An iteration is a list of :class:`Stage`. In a stage the NPU (systolic arrays + vector
units) runs one chain of work and every PIM channel runs its share of one sub-batch's
attention; the stage ends when both are done (docs/sources/neupims.md §10: "each stage lasts
max(NPU work, PIM work)"). simpy drives the NPU process and the PIM process of every
stage, so an iteration costs O(layers x stages) events, never O(cycles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simpy

from neupims.atomic import atomic_write_text


@dataclass(frozen=True)
class Stage:
    """One stage: ``npu`` cycles of NPU work, ``pim`` cycles per channel (or None)."""

    label: str  # A..F, or QKV / MHA / ProjFFN
    layer: int
    npu: float
    npu_what: str
    pim: np.ndarray | None = None
    pim_what: str = ""
    link: float = 0.0  # cycles of the NPU chain spent waiting on TP all-reduce (inside npu)
    #: cycles each channel's PIM has work (None: as ``pim``); ``pim`` is when each channel's
    #: part of the stage ends, which a barrier between phases makes later than its work
    pim_busy: np.ndarray | None = None

    @property
    def pim_max(self) -> float:
        return float(self.pim.max()) if self.pim is not None and self.pim.size else 0.0


@dataclass
class Span:
    track: str
    name: str
    start: float
    dur: float


@dataclass
class TimelineResult:
    total: float
    stage_end: list[float]
    spans: list[Span] = field(default_factory=list)


def simulate(stages: list[Stage], record: bool = False) -> TimelineResult:
    """Run the stages on a simpy clock (cycles). ``record`` keeps the spans for export."""
    env = simpy.Environment()
    ends: list[float] = []
    spans: list[Span] = []

    def npu_work(st: Stage):
        if record and st.npu > 0:
            spans.append(Span("NPU", f"L{st.layer} {st.label}: {st.npu_what}", env.now, st.npu))
        yield env.timeout(st.npu)

    def pim_work(st: Stage):
        if record:
            for c, d in enumerate(st.pim):
                if d > 0:
                    spans.append(Span(f"PIM ch{c:02d}", st.pim_what, env.now, d))
        yield env.timeout(st.pim_max)

    def driver():
        for st in stages:
            start = env.now
            procs = [env.process(npu_work(st))]
            if st.pim is not None:
                procs.append(env.process(pim_work(st)))
            yield simpy.AllOf(env, procs)
            if record:
                spans.append(Span("stage", f"L{st.layer} {st.label}", start, env.now - start))
            ends.append(env.now)

    env.process(driver())
    env.run()
    return TimelineResult(float(env.now), ends, spans)


def write_chrome_trace(result: TimelineResult, path: str | Path, cycle_ns: float = 1.0) -> None:
    """Chrome trace event format (``ph: X`` complete events, microseconds), one thread per
    track: NPU, each PIM channel, the stage boundaries. Open in Perfetto or chrome://tracing."""
    tracks = sorted({s.track for s in result.spans}, key=lambda t: (t != "stage", t != "NPU", t))
    tid = {t: i for i, t in enumerate(tracks)}
    us = cycle_ns * 1e-3
    events = [
        {"ph": "M", "name": "thread_name", "pid": 0, "tid": tid[t], "args": {"name": t}}
        for t in tracks
    ]
    events += [
        {
            "ph": "X",
            "name": s.name,
            "cat": s.track.split()[0],
            "pid": 0,
            "tid": tid[s.track],
            "ts": s.start * us,
            "dur": s.dur * us,
        }
        for s in result.spans
    ]
    atomic_write_text(path, json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}))

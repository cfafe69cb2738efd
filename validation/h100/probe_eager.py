"""Probe the eager decode anomaly (docs/gpu.md): why a GPT-3 6.7B decode layer at batch 1
takes ~2x its CUDA-graph time in eager PyTorch while a 13B layer does not.

For each model, at batch 1 and context 512, it reports per 2-layer step:
- the host time to enqueue the ops (CPU wall time of the Python loop, no sync, with the
  GPU kept busy by a long kernel first so the queue never drains);
- the eager GPU-event time (back to back) and the CUDA-graph replay time;
- whether any op synchronises (torch.cuda.set_sync_debug_mode);
- the SM clock read by nvidia-smi while eager steps run.

    python3 validation/h100/probe_eager.py OUT
Standalone (torch + stdlib); reuses Layer from measure.py.
"""

# ruff: noqa: B023, E402, F821
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import torch
from measure import GPT, Layer, rnd


def clocks_during(fn, seconds: float) -> list[int]:
    samples: list[int] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            out = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout.strip()  # fmt: skip
            if out.isdigit():
                samples.append(int(out))
            time.sleep(0.05)

    th = threading.Thread(target=poll)
    th.start()
    t_end = time.time() + seconds
    while time.time() < t_end:
        fn()
    torch.cuda.synchronize()
    stop.set()
    th.join()
    return samples


def main(out: str) -> None:
    os.makedirs(out, exist_ok=True)
    dt = torch.float16
    res = {}
    for model in ("gpt3-6.7b", "gpt3-13b", "gpt3-30b"):
        _, d, h, ff, _ = GPT[model]
        layers = [Layer(d, h, ff, dt) for _ in range(2)]
        hd = d // h
        x = rnd(1, 1, d, dtype=dt)
        caches = [(rnd(1, h, 512, hd, dtype=dt), rnd(1, h, 512, hd, dtype=dt)) for _ in range(2)]

        def body():
            y = x
            for lyr, (kc, vc) in zip(layers, caches, strict=True):
                y = lyr.forward(y, kc, vc, 511)
            return y

        for _ in range(20):
            body()
        torch.cuda.synchronize()
        # host enqueue time: keep the GPU busy first so launches never wait for it
        big = torch.randn(8192, 8192, device="cuda", dtype=dt)
        host = []
        for _ in range(30):
            for _ in range(6):
                big @ big
            t0 = time.perf_counter()
            body()
            host.append(time.perf_counter() - t0)
            torch.cuda.synchronize()
        # eager back to back, events
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(200):
            body()
        e.record()
        torch.cuda.synchronize()
        eager = s.elapsed_time(e) / 200 * 1e-3
        g = torch.cuda.CUDAGraph()
        st = torch.cuda.Stream()
        st.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(st):
            body()
        torch.cuda.current_stream().wait_stream(st)
        with torch.cuda.graph(g):
            body()
        s.record()
        for _ in range(200):
            g.replay()
        e.record()
        torch.cuda.synchronize()
        graph = s.elapsed_time(e) / 200 * 1e-3
        torch.cuda.set_sync_debug_mode(1)
        import warnings

        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            body()
        torch.cuda.set_sync_debug_mode(0)
        clocks = clocks_during(body, 1.5)
        res[model] = {
            "host_enqueue_us_per_step": statistics.median(host) * 1e6,
            "eager_us_per_step": eager * 1e6,
            "graph_us_per_step": graph * 1e6,
            "sync_warnings": [str(x.message)[:120] for x in w],
            "sm_clock_mhz_during_eager": [
                min(clocks or [0]),
                statistics.median(clocks or [0]),
                max(clocks or [0]),
            ],  # fmt: skip
        }
        print(model, json.dumps(res[model]), flush=True)
        del layers, caches, big, g
        torch.cuda.empty_cache()
    with open(os.path.join(out, "probe_eager.json"), "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])

"""Fit the kernel models' two measured constants and compare the rest with the H200 run.

    python validation/kernels/fit.py [validation/kernels/h200/kernels.csv]

Reads the rows ``measure.py`` wrote and the GPU model of an H200: ``hw_configs/h100_sxm``
(same GH100 SMs, clocks and L2) with the H200's HBM3e, 4800 GB/s and 141 GB (NVIDIA H200
datasheet). Prints, and writes next to the CSV as ``fitted.json`` and
``model_vs_measured.csv``:

* ``na_naive_av_eff``: per naive-AV row, the fraction of its load/store-unit bound that
  explains the measured time (measured - launch time, when that exceeds the DRAM time);
  the median over the rows.
* ``fft_simt_eff``: per real-FFT row, the fraction of the FP32 SIMT peak that explains the
  measured time in the same way; the median.
* checks, not fits: the naive QK kernel (no free constant), softmax, the whole FFT
  convolution and the direct convolution, as measured / model ratios.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import statistics
import sys
from pathlib import Path

from neupims.config.overrides import apply_hw_overrides
from neupims.devices import get_model
from neupims.devices.gpu_longconv import long_conv, transform_time
from neupims.devices.gpu_natten import naive_av, naive_qk, sm_clock_rate, softmax_time
from neupims.ops import LongConv, NeighborhoodAttention

H200 = {"name": "h200-from-h100", "hbm_bandwidth_gbps": 4800, "hbm_capacity_gb": 141}


def h200_model(**eff):
    hw = apply_hw_overrides("h100_sxm", H200)
    if eff:
        hw = hw.model_copy(update={"efficiency": {**hw.efficiency, **eff}})
    return get_model(hw)


def fit(path: Path) -> dict:
    rows = list(csv.DictReader(path.open()))
    base = h200_model()
    fixed = base.eff["ew_fixed_us"] * 1e-6
    out_rows, av_effs, fft_effs = [], [], []
    qk_ratio, sm_ratio = [], []
    for r in rows:
        t = float(r["measured_s"])
        if r["suite"] in ("natten_naive", "softmax"):
            op = NeighborhoodAttention(batch=int(r["batch"]), heads=int(r["heads"]),
                                       dims=r["dims"], kernel=r["kernel_size"],
                                       head_dim=int(r["head_dim"]), dtype=r["dtype"],
                                       algo="naive")  # fmt: skip
            if r["kernel"] == "qk":
                model_t = naive_qk(base, op).time(base)
                qk_ratio.append(t / model_t)
            elif r["kernel"] == "av":
                k = dataclasses.replace(naive_av(base, op), eff=1.0)
                bound = k.cycles / sm_clock_rate(base)
                t_mem = k.dram_bytes / (base.eff["dram_eff"] * base.bw)
                if t - fixed > t_mem:
                    av_effs.append(bound / (t - fixed))
                model_t = k.time(base)
            else:
                model_t = softmax_time(base, op)
                sm_ratio.append(t / model_t)
        elif r["suite"] == "longconv":
            op = LongConv(int(r["batch"]), int(r["heads"]), int(r["dims"]), dtype=r["dtype"],
                          algo="direct" if r["kernel"] == "direct" else "fft")  # fmt: skip
            if r["kernel"] == "rfft_only":
                model_t, _, passes = transform_time(base, op)
                n = op.fft_size
                flops = op.sequences * 2.5 * n * math.log2(n)
                peak = base.hw.cuda_core_tflops["fp32"] * 1e12
                fft_effs.append(flops / (peak * (t - passes * fixed)))
            else:
                model_t = long_conv(base, op).latency_s
        else:
            continue
        out_rows.append({**{k: r[k] for k in ("suite", "kernel", "batch", "heads", "dims",
                                               "kernel_size", "head_dim", "dtype")},
                         "measured_s": t, "model_s_before_fit": model_t,
                         "ratio_measured_over_model": t / model_t})  # fmt: skip
    fitted = {
        "na_naive_av_eff": round(statistics.median(av_effs), 3),
        "fft_simt_eff": round(statistics.median(fft_effs), 3),
        "rows_av": len(av_effs),
        "rows_fft": len(fft_effs),
        "naive_qk_measured_over_model_median": round(statistics.median(qk_ratio), 3),
        "naive_qk_measured_over_model_range": [round(min(qk_ratio), 3), round(max(qk_ratio), 3)],
        "softmax_measured_over_model_median": round(statistics.median(sm_ratio), 3),
        "device": rows[0]["device"],
        "source": str(path),
    }
    # with the fitted constants: the whole convolutions
    tuned = h200_model(na_naive_av_eff=fitted["na_naive_av_eff"],
                       fft_simt_eff=fitted["fft_simt_eff"])  # fmt: skip
    after = {}
    for o in out_rows:
        if o["suite"] == "longconv" and o["kernel"] in ("fft", "direct"):
            op = LongConv(int(o["batch"]), int(o["heads"]), int(o["dims"]), dtype=o["dtype"],
                          algo=o["kernel"])  # fmt: skip
            o["model_s_after_fit"] = long_conv(tuned, op).latency_s
            after.setdefault(o["kernel"], []).append(o["measured_s"] / o["model_s_after_fit"])
        elif o["suite"] == "natten_naive" and o["kernel"] == "av":
            op = NeighborhoodAttention(batch=int(o["batch"]), heads=int(o["heads"]),
                                       dims=o["dims"], kernel=o["kernel_size"],
                                       head_dim=int(o["head_dim"]), dtype=o["dtype"],
                                       algo="naive")  # fmt: skip
            o["model_s_after_fit"] = naive_av(tuned, op).time(tuned)
            after.setdefault("av", []).append(o["measured_s"] / o["model_s_after_fit"])
    for k, v in after.items():
        fitted[f"{k}_measured_over_model_after_fit"] = [round(min(v), 3),
                                                        round(statistics.median(v), 3),
                                                        round(max(v), 3)]  # fmt: skip
    return {"fitted": fitted, "rows": out_rows}


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "validation/kernels/h200/kernels.csv")
    res = fit(path)
    print(json.dumps(res["fitted"], indent=1))
    (path.parent / "fitted.json").write_text(json.dumps(res["fitted"], indent=1) + "\n")
    cols = ["suite", "kernel", "batch", "heads", "dims", "kernel_size", "head_dim", "dtype",
            "measured_s", "model_s_before_fit", "ratio_measured_over_model",
            "model_s_after_fit"]  # fmt: skip
    with (path.parent / "model_vs_measured.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(res["rows"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

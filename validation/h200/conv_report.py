"""Convolution accuracy of a GPU config on the H200 measurements, per class.

    .venv/bin/python validation/h200/conv_report.py [--hw h200_sxm] [--json OUT]

Classes of the issue-13 target (ResNet-50 and VGG-16 layers, batch 1/32/128, as PyTorch
runs them): dtype x TF32 x algorithm choice (``heuristic`` = ``cudnn.benchmark = False``,
``benchmark`` = True), from conv_heuristic.csv and conv_benchmark.csv. Then cuDNN's FFT,
FFT-tiling and non-fused Winograd algorithms forced through the legacy API
(conv_forced.csv) per algorithm and batch, and the ``exhaustive`` choice against the
fastest measured algorithm of every layer (conv_algos.csv and conv_benchmark.csv).

MAPE on the fitted part, on the third ``neupims calibrate`` holds out of every fit (the
same CRC32 split), and on all samples. Reads only committed files; deterministic.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHOICE_FILES = [HERE / "conv_heuristic.csv", HERE / "conv_benchmark.csv"]
FORCED_FILE = HERE / "conv_forced.csv"
#: classes of the target, in report order: (dtype, TF32 flag or "-", choice)
TARGET_CLASSES = [(d, t, c) for d, t in (("fp16", "-"), ("fp32", "on"), ("fp32", "off"))
                  for c in ("heuristic", "benchmark")]  # fmt: skip


def _mape(errs: list[float]) -> float:
    return 100.0 * sum(abs(e) for e in errs) / len(errs) if errs else float("nan")


def sample_class(s) -> tuple[str, str, str]:
    """(dtype, TF32 on/off or '-', choice or forced algorithm) of a conv sample."""
    hw = dict(s.hw)
    tf32 = "-"
    if s.op.dtype == "fp32":
        tf32 = "on" if hw.get("conv_fp32_math", "tf32") == "tf32" else "off"
    return s.op.dtype, tf32, hw.get("conv_algo_choice", s.op.algo)


def class_errors(hw, files) -> dict[tuple, list[tuple[float, bool]]]:
    """class -> [(relative error, held out)] of the samples of ``files``."""
    from neupims.calibrate import gpu_model, load_measurements, predict_sample

    model = gpu_model(hw)
    out: dict[tuple, list[tuple[float, bool]]] = defaultdict(list)
    for s in load_measurements(files):
        pred = predict_sample(model, s)
        out[sample_class(s)].append(((pred - s.measured_s) / s.measured_s, s.holdout))
    return out


def summarise(errs: list[tuple[float, bool]]) -> dict:
    return {
        "n": len(errs),
        "mape_fit": _mape([e for e, h in errs if not h]),
        "mape_holdout": _mape([e for e, h in errs if h]),
        "mape_all": _mape([e for e, _ in errs]),
    }


def exhaustive_check(hw) -> dict:
    """The model's ``exhaustive`` choice against the fastest measured way cuDNN ran each
    layer: the best of the forced legacy algorithms and of PyTorch's benchmark pick."""
    from neupims.calibrate import gpu_model
    from neupims.ops import Conv2d

    best: dict[tuple, float] = {}
    for path in (HERE / "conv_algos.csv", HERE / "conv_benchmark.csv"):
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                if not r["measured_s"]:
                    continue
                key = tuple(r[k] for k in ("batch", "c", "h", "w", "kout", "r", "s", "stride",
                                           "pad", "dtype", "tf32_conv"))  # fmt: skip
                best[key] = min(best.get(key, float("inf")), float(r["measured_s"]))
    model = gpu_model(hw)
    errs, picks = [], defaultdict(int)
    for key, t in best.items():
        b, c, h, w, k, r, s, st, pad, dtype, tf32 = key
        op = Conv2d(int(b), int(c), int(h), int(w), int(k), int(r), int(s), stride=int(st),
                    pad=int(pad), dtype=dtype)  # fmt: skip
        m = model.variant(conv_algo_choice="exhaustive",
                          conv_fp32_math="tf32" if tf32 == "True" else "fp32")  # fmt: skip
        cost = m.estimate(op)
        picks[dict(cost.detail)["algo_used"]] += 1
        errs.append((cost.latency_s - t) / t)
    return {"n": len(errs), "mape_all": _mape(errs), "model_picks": dict(picks)}


def report(hw) -> dict:
    from neupims.calibrate import gpu_model, load_measurements, predict_sample

    by_class = class_errors(hw, CHOICE_FILES)
    model = gpu_model(hw)
    forced: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for s in load_measurements([FORCED_FILE]):
        err = (predict_sample(model, s) - s.measured_s) / s.measured_s
        forced[f"{s.op.algo} batch {s.op.batch}"].append((err, s.holdout))
    target = [e for cls in TARGET_CLASSES for e in by_class.get(cls, [])]
    return {
        "classes": {" / ".join(cls): summarise(by_class.get(cls, [])) for cls in TARGET_CLASSES},
        "target_all": summarise(target),
        "forced": {k: summarise(v) for k, v in sorted(forced.items())},
        "exhaustive": exhaustive_check(hw),
    }


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from neupims.config import load_hw

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", default="h200_sxm")
    ap.add_argument("--json", default=None, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    rep = report(load_hw(args.hw))
    print(f"{'class (dtype / TF32 / choice)':34s} {'n':>4s} {'fitted':>8s} {'held out':>9s} "
          f"{'all':>7s}")  # fmt: skip
    rows = list(rep["classes"].items()) + [("target: all classes", rep["target_all"])]
    rows += [(f"forced {a}", v) for a, v in rep["forced"].items()]
    for name, v in rows:
        print(f"{name:34s} {v['n']:4d} {v['mape_fit']:7.1f}% {v['mape_holdout']:8.1f}% "
              f"{v['mape_all']:6.1f}%")  # fmt: skip
    ex = rep["exhaustive"]
    print(f"{'exhaustive vs fastest measured':34s} {ex['n']:4d} {'':8s} {'':9s} "
          f"{ex['mape_all']:6.1f}%  model picks {ex['model_picks']}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

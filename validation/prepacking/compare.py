"""Compare the H200 prefill timings of measure_prefill.py with neupims' Prepacking model.

For every measured case and layout (padded or packed rows, dense fp16 mask, SDPA) the model
costs the same work: a 4-layer Sheared-LLaMA-1.3B stack (no embedding, final norm or LM head;
attention mode ``sdpa_mask``) through :func:`neupims.serving.costing.step_time` on the
``h100_sxm`` config with its HBM bandwidth set to the H200's 4.8 TB/s (H200 datasheet; the
H200 has the H100 SXM's compute) and its memory to 141 GB. Memory: the model's KV + mask +
largest layer transient against the measured peak above the weights. Prints a table and
writes ``compare_h200.csv`` beside this file. Usage: python compare.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from neupims.config import load_hw
from neupims.serving.costing import step_time
from neupims.serving.prefill import Layout, prefill_memory, prefill_ops
from neupims.workloads import get_model

HERE = Path(__file__).parent
VARIANTS = {"padded_mask": False, "packed_mask": True}


def main() -> None:
    hw = load_hw("h100_sxm").model_copy(update={"hbm_bandwidth_gbps": 4800, "hbm_capacity_gb": 141})
    cases = {c["case"]: c for c in json.loads((HERE / "cases.json").read_text())}
    measured = list(csv.DictReader((HERE / "prefill_h200.csv").open()))
    layers = int(measured[0]["layers"])
    spec = get_model("sheared-llama-1.3b").model_copy(update={"layers": layers})
    out = []
    for row in measured:
        if row["variant"] not in VARIANTS:
            continue
        case = cases[row["case"]]
        lengths = tuple(case["lengths"])
        rows = (tuple(case["rows"]) if VARIANTS[row["variant"]]
                else tuple((i,) for i in range(len(lengths))))  # fmt: skip
        lay = Layout(lengths, tuple(tuple(r) for r in rows), VARIANTS[row["variant"]])
        ops = [t for t in prefill_ops(spec, lay, attention="sdpa_mask", logits="last")
               if t.layer not in ("embed", "final_norm", "lm_head")]  # fmt: skip
        st = step_time(hw, ops)
        mem = prefill_memory(spec, lay, attention="sdpa_mask", logits="last")
        out.append({
            "case": row["case"], "variant": row["variant"], "rows": lay.n_rows,
            "width": lay.width, "measured_ms": float(row["median_ms"]),
            "model_ms": st.seconds * 1e3, "model_attention_ms": st.kind_seconds("attention") * 1e3,
            "measured_mem_gb": float(row["peak_bytes_above_weights"]) / 1e9,
            "model_mem_gb": (mem.kv + mem.mask + mem.activations) / 1e9,
        })  # fmt: skip
    by = {(r["case"], r["variant"]): r for r in out}
    print(
        f"{'case':24s} {'meas pad/pack':>13s} {'model pad/pack':>14s}  "
        f"{'meas ms pad,pack':>17s} {'model ms pad,pack':>18s}  {'mem GB meas/model (pad)':>24s}"
    )
    for c in cases:
        p, k = by[(c, "padded_mask")], by[(c, "packed_mask")]
        p["measured_ratio"] = k["measured_ratio"] = p["measured_ms"] / k["measured_ms"]
        p["model_ratio"] = k["model_ratio"] = p["model_ms"] / k["model_ms"]
        print(f"{c:24s} {p['measured_ratio']:13.2f} {p['model_ratio']:14.2f}  "
              f"{p['measured_ms']:8.2f},{k['measured_ms']:7.2f} {p['model_ms']:9.2f},{k['model_ms']:7.2f}"
              f"  {p['measured_mem_gb']:11.2f} / {p['model_mem_gb']:.2f}")  # fmt: skip
    with (HERE / "compare_h200.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)


if __name__ == "__main__":
    main()

"""Write the prompt-length cases that measure_prefill.py times (run here, before the device).

Each case: a batch of prompt lengths drawn with neupims' ShareGPT / Alpaca samplers, and the
rows the Prepacking packer (best fit decreasing, capacity = the longest prompt) puts them in,
so the device script needs nothing of neupims. Usage: python make_cases.py OUT.json
"""

from __future__ import annotations

import json
import sys

from neupims.serving.prefill import packed_layout, prompt_lengths


def cases() -> list[dict]:
    out = []
    for dataset, clip, batch, seed in [
        ("sharegpt", 512, 16, 0), ("sharegpt", 512, 64, 0), ("sharegpt", 512, 64, 1),
        ("sharegpt", 2048, 32, 2), ("sharegpt", 2048, 64, 0), ("sharegpt", 2048, 64, 1),
        ("alpaca", 512, 64, 0),
    ]:  # fmt: skip
        lengths = [int(x) for x in prompt_lengths(dataset, batch, seed, clip)]
        rows = [list(r) for r in packed_layout(lengths).rows]
        out.append({"case": f"{dataset}_le{clip}_b{batch}_s{seed}", "dataset": dataset,
                    "clip": clip, "batch": batch, "seed": seed, "lengths": lengths,
                    "rows": rows})  # fmt: skip
    return out


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        json.dump(cases(), f)

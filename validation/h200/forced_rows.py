"""Write conv_forced.csv: the rows of conv_algos.csv that time cuDNN's FFT, FFT-tiling
and non-fused Winograd algorithms (forced through the legacy API), for
``neupims calibrate``.

    python3 validation/h200/forced_rows.py

Left out: rows whose algorithm did not run (status column ``cudnn_algo`` = ``status=N``:
NOT_SUPPORTED shapes) and the legacy API's GEMM algorithms (IMPLICIT_GEMM,
IMPLICIT_PRECOMP_GEMM, GEMM, DIRECT): those are the legacy library's own kernels
(``implicit_convolve_sgemm``, ``explicit_convolve_sgemm`` after ``im2col4d_kernel``, a
grouped direct kernel), not the backend engines PyTorch runs, which the heuristic and
benchmark files measure. Also left out: FFT rows where cuDNN's legacy FFT ran another
implementation than the one-pass fbfft-style kernels (``fft2d_r2c_*``, one product launch)
that the backend FFT engine PyTorch picks runs: ``DSE::regular_fft_pad`` / ``vector_fft``
for the 112 and 224 pixel images, ``region_transform`` at batch 1, or one complex GEMM
launch per frequency (144 launches for some 1x1 layers). They stay in conv_algos.csv.
Standard library only.
"""

from __future__ import annotations

import csv
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP = ("fft", "fft_tiling", "winograd_nonfused")


def one_pass_fft(row: dict[str, str]) -> bool:
    """Whether a forced FFT row ran the fbfft-style kernels with one product launch."""
    kernels = json.loads(row["kernels"])
    names = " ".join(k[0] for k in kernels)
    return "fft2d_r2c" in names and max(k[2] for k in kernels) <= 2


def main() -> int:
    src = os.path.join(HERE, "conv_algos.csv")
    dst = os.path.join(HERE, "conv_forced.csv")
    with open(src, newline="") as fh:
        rd = csv.DictReader(fh)
        cols = [c for c in rd.fieldnames or [] if c != "kernels"]
        timed = [r for r in rd if r["algo"] in KEEP and r["measured_s"]]
    rows = [r for r in timed if r["algo"] != "fft" or one_pass_fft(r)]
    print(f"{len(timed) - len(rows)} FFT rows ran another implementation: left out")
    tmp = dst + ".tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, dst)
    print(f"wrote {len(rows)} rows to {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

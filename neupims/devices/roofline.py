"""Roofline model: latency = max(FLOPs / peak FLOP/s, bytes / peak bandwidth).

Works for every hardware kind whose config exposes ``peak_flops(dtype)`` and a peak
bandwidth. It is the named fallback (``model = roofline``) and the upper bound that the
detailed models are checked against.
"""

from __future__ import annotations

from neupims.config import load_hw
from neupims.devices.base import Cost, DeviceModel, roofline_only
from neupims.ops import Attention, Conv2d, Op, dtype_bytes


def peak_bandwidth(hw) -> float:
    """Main-memory bandwidth (bytes/s) of a hardware config of any kind."""
    if hasattr(hw, "peak_bytes_per_s"):
        return float(hw.peak_bytes_per_s)
    if getattr(hw, "kind", None) == "npu":
        return float(load_hw(hw.memory).peak_bytes_per_s)
    raise TypeError(f"{type(hw).__name__} has no peak bandwidth")


def footprint(op: Op) -> float:
    """Resident bytes: compulsory traffic plus algorithm workspace where it is known."""
    fp = float(op.min_bytes)
    if isinstance(op, Conv2d) and op.algo in ("im2col", "im2win"):
        ws = op.im2col_elems if op.algo == "im2col" else op.im2win_elems
        fp += ws * dtype_bytes(op.dtype)
    return fp


class Roofline(DeviceModel):
    name = "roofline"
    kinds = ("npu", "memory", "gpu", "cpu")

    def __init__(self, hw):
        super().__init__(hw)
        self.bw = peak_bandwidth(hw)

    def _estimate(self, op: Op) -> Cost:
        dtype = getattr(op, "dtype", "fp16")
        peak = self.hw.peak_flops(dtype)
        t_compute = op.flops / peak if peak > 0 else (float("inf") if op.flops else 0.0)
        t_mem = op.min_bytes / self.bw
        bound = "compute" if t_compute >= t_mem else "memory"
        if isinstance(op, Attention) and op.q_len == 1:
            bound = "memory" if t_mem >= t_compute else bound
        return Cost(
            latency_s=max(t_compute, t_mem),
            flops=op.flops,
            bytes=op.min_bytes,
            footprint_bytes=footprint(op),
            bound=bound,
            model=self.name,
        )


# Never the default: it is the fallback get_model() uses for kinds without a detailed model,
# whatever order the device modules are imported in.
roofline_only(Roofline)

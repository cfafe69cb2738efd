"""Device-to-device communication of tensor and pipeline parallelism (seconds).

Each system passes the link of its own hardware (``interconnect_gbps`` in GB/s per direction,
``interconnect_latency_us`` per message): the NPU config's link for the NPU systems, NVLink
for the GPU system.
"""

from __future__ import annotations


def ring_allreduce_s(nbytes: float, devices: int, gbps: float, latency_us: float) -> float:
    """Ring all-reduce of ``nbytes`` over ``devices``: 2 (p - 1) / p of the bytes cross each
    link, in 2 (p - 1) steps of one message latency each (Patarasuk and Yuan, 2009)."""
    if devices <= 1 or nbytes <= 0:
        return 0.0
    p = devices
    return 2 * (p - 1) / p * nbytes / (gbps * 1e9) + 2 * (p - 1) * latency_us * 1e-6


def send_s(nbytes: float, gbps: float, latency_us: float) -> float:
    """One point-to-point message (a pipeline hand-off of activations)."""
    return nbytes / (gbps * 1e9) + latency_us * 1e-6

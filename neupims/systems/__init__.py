"""Layer 4: systems (NPU-only, NPU+PIM, NeuPIMs, GPU-only) as configuration, the simpy
timeline of one decode iteration, channel placement policies."""

from neupims.systems.base import SYSTEMS, SystemSpec, get_system, register_system

__all__ = ["SYSTEMS", "SystemSpec", "get_system", "register_system"]

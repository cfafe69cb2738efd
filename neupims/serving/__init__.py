"""Layer 5: continuous (iteration-level) batching over request streams, KV capacity, metrics."""

from neupims.serving.loop import Server, ServingStats, serve

__all__ = ["Server", "ServingStats", "serve"]

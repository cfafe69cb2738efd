"""neupims: a fast, validated simulator of DNN/LLM inference hardware.

Python API (the CLI wraps the same functions):
    neupims.trace(model, phase, batch, seq, tp=1) -> list of TracedOp
    neupims.replay(trace, hw) -> pandas.DataFrame of per-op costs
    neupims.replay_step(trace, hw, dispatch=None) -> (per-op DataFrame, StepCost)
    neupims.build_system(name, model, tp=1, pp=1) -> a System (its .iteration(seq_lens, ch))
    neupims.load_hw(name_or_path) -> typed hardware config
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy imports keep `import neupims` and the CLI start-up fast.
    if name == "replay":
        from neupims.replay import replay

        return replay
    if name == "replay_step":
        from neupims.replay import replay_step

        return replay_step
    if name == "build_system":
        from neupims.systems.base import build_system

        return build_system
    if name == "load_hw":
        import neupims.devices  # noqa: F401  registers run-time names such as "cpu"
        from neupims.config import load_hw

        return load_hw
    if name == "trace":
        from neupims.workloads import trace

        return trace
    if name == "run":
        from neupims.experiments import run

        return run
    raise AttributeError(name)

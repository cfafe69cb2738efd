"""The conv_algos experiment kind (experiments/im2win_gpu.yaml)."""

from __future__ import annotations

import pytest

from neupims.experiments.kinds import get_kind


@pytest.fixture(scope="module")
def kind():
    return get_kind("conv_algos")


def _point(kind, **kw):
    return kind.run_point(kind.schema(**{"hw": "a100_40gb", "conv_fp32_math": "fp32", **kw}))


def test_point_reports_model_and_paper_numbers(kind):
    r = _point(kind, layer="conv12", algo="im2win")
    assert set(kind.metrics) <= set(r)
    assert r["paper_tflops"] == pytest.approx(7.64)  # docs/sources/kernels.md §1.2, Conv12 im2win
    assert r["paper_mem_gb"] == pytest.approx(0.815)
    assert r["tflops"] <= r["kernel_tflops"]  # the window copy costs time


def test_im2win_saves_memory_over_im2col_on_every_layer(kind):
    for i in range(1, 13):
        r = _point(kind, layer=f"conv{i}", algo="im2win")
        assert 0 < r["memory_vs_im2col"] < 1
        assert r["memory_saving_vs_im2col_pct"] > 0


def test_direct_is_the_slowest(kind):
    times = {a: _point(kind, layer="conv8", algo=a)["latency_s"]
             for a in ("im2col", "cudnn_best", "im2win", "direct")}  # fmt: skip
    assert max(times, key=times.get) == "direct"


def test_non_gpu_hw_is_rejected(kind):
    from neupims.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a gpu"):
        _point(kind, hw="npu_neupims")

"""Dataset length statistics and the fitted request-length distributions."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from neupims.errors import ConfigError, NeupimsError
from neupims.workloads.datasets import (
    get_dataset,
    length_distributions,
    load_dataset_file,
    sample_requests,
)

# docs/sources/neupims.md §12: (mean, median, p90, p99, max) of input and output tokens.
REPORTED = {
    "sharegpt": ((80.0, 17, 118, 1262, 196710), (295.7, 261, 576, 961, 63144)),
    "alpaca": ((12.1, 11, 17, 27, 99), (55.8, 41, 122, 249, 1005)),
}


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_yaml_holds_the_reported_statistics(name):
    ds = get_dataset(name)
    for stats, ref in zip((ds.input, ds.output), REPORTED[name], strict=True):
        assert (stats.mean, stats.median, stats.p90, stats.p99, stats.max) == ref
    assert ds.pairs == {"sharegpt": 390819, "alpaca": 51974}[name]


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_fitted_distribution_passes_through_the_quantiles_and_mean(name):
    for dist, (mean, med, p90, p99, mx) in zip(
        length_distributions(name), REPORTED[name], strict=True
    ):
        got = dist.ppf(np.array([0.5, 0.9, 0.99, 0.999999999]))
        assert got == pytest.approx([med, p90, p99, mx], rel=1e-9)
        assert dist.mean() == pytest.approx(mean, rel=2e-3)


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_samples_reproduce_mean_median_p90(name):
    ins, outs = sample_requests(name, 100_000, seed=7)
    for arr, (mean, med, p90, _, mx) in zip((ins, outs), REPORTED[name], strict=True):
        assert arr.dtype == np.int64 and arr.min() >= 1 and arr.max() <= mx
        assert np.median(arr) == pytest.approx(med, rel=0.03)
        assert np.percentile(arr, 90) == pytest.approx(p90, rel=0.04)
        # heavy tails (ShareGPT input max 196,710) make the sample mean noisy
        assert arr.mean() == pytest.approx(mean, rel=0.06)


def test_sampling_is_deterministic_per_seed():
    a = sample_requests("sharegpt", 1000, seed=3)
    b = sample_requests("sharegpt", 1000, seed=3)
    c = sample_requests("sharegpt", 1000, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert sample_requests("alpaca", 0)[0].shape == (0,)


def test_bad_dataset_inputs(tmp_path):
    with pytest.raises(NeupimsError, match="unknown dataset 'sharegtp'; expected one of"):
        get_dataset("sharegtp")
    with pytest.raises(NeupimsError, match="n must be a non-negative integer, got -1"):
        sample_requests("alpaca", -1)
    data = yaml.safe_load(get_dataset.__wrapped__("alpaca").model_dump_json())
    data["output"]["p90"] = 7  # below the median
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as exc:
        load_dataset_file(path)
    assert str(exc.value).startswith(
        f"{path}: output: expected median <= p90 <= p99 <= max, got 41, 7, 249, 1005"
    )

"""NPU device model: tile closed form, SRAM tiling, DMA bound, registration."""

from __future__ import annotations

import math

import pytest

from neupims.config import load_hw
from neupims.devices import get_model
from neupims.devices.npu import attention_gemv_compute_cycles, gemm_tiles, vector_cycles
from neupims.ops import Attention, Elementwise, Gemm


@pytest.fixture(scope="module")
def npu():
    return load_hw("npu_neupims")


def closed_form(m, n, k, h=128, w=128, arrays=8):
    """ONNXim issue rule written out independently: tiles of 128x128 weights spread over the
    arrays; consecutive tiles issue max(rows, 4, H) apart; the last takes H+W-2+max(rows,4)."""
    tiles = math.ceil(k / h) * math.ceil(n / w)
    per_array = math.ceil(tiles / arrays)
    rows = max(m, 4)
    return (per_array - 1) * max(rows, h) + (h + w - 2) + rows


@pytest.mark.parametrize(
    "m,n,k",
    [(512, 3072, 4096), (256, 4096, 1024), (64, 16384, 4096), (3, 130, 129), (128, 128, 128)],
)
def test_gemm_tile_closed_form(npu, m, n, k):
    t = gemm_tiles(m, n, k, npu)
    assert t.m_tile_rows == m  # 131 MB SRAM holds the whole activation block
    assert t.compute_cycles == closed_form(m, n, k)
    assert t.macs == m * n * k


def test_small_sram_splits_m_and_rereads_weights(npu):
    small = npu.model_copy(update={"sram_bytes": 4 * 2**20})
    t = gemm_tiles(4096, 4096, 4096, small)
    # half of 4 MiB less two 32 KiB weight tiles, over (k + n) * 2 bytes per row
    expect_rows = int((2 * 2**20 - 2 * 128 * 128 * 2) // ((4096 + 4096) * 2))
    assert t.m_tile_rows == expect_rows
    assert t.dma_bytes == math.ceil(4096 / expect_rows) * 4096 * 4096 * 2
    big = gemm_tiles(4096, 4096, 4096, npu)
    assert big.dma_bytes == 4096 * 4096 * 2


def test_registered_as_default_npu_model(npu):
    dev = get_model(npu)
    assert dev.name == "npu"
    c = dev.estimate(Gemm(512, 3072, 4096))
    d = dict(c.detail)
    assert c.model == "npu" and c.bound == "compute"
    assert 0 < d["utilisation"] <= 1
    # utilisation is MACs over peak MACs x cycles
    assert d["utilisation"] == pytest.approx(512 * 3072 * 4096 / (8 * 128 * 128 * d["cycles"]))


def test_decode_gemm_small_batch_is_weight_dma_bound(npu):
    c = get_model(npu).estimate(Gemm(8, 4096, 4096))
    assert c.bound == "memory"
    # 32 MiB of weights at <= 1024 GB/s cannot take less than 32.7 us
    assert c.latency_s >= 4096 * 4096 * 2 / 1024e9


def test_decode_attention_on_npu_is_memory_bound(npu):
    op = Attention(batch=64, heads=8, kv_heads=8, q_len=1, kv_len=512, head_dim=128)
    c = get_model(npu).estimate(op)
    assert c.bound == "memory"
    assert c.latency_s >= op.kv_bytes / 1024e9
    compute = attention_gemv_compute_cycles([512] * 64, 8, 128, npu)
    assert compute * 1e-9 < c.latency_s


def test_vector_units(npu):
    assert vector_cycles(1024 * 10, 1, npu) == 10 + 1  # 8 x 128 lanes, latency 1
    c = get_model(npu).estimate(Elementwise("gelu", 1024))
    assert c.bound == "vector" and dict(c.detail)["cycles"] == 8 + 1


# --------------------------------------------------------------- inputs-stationary mapping


@pytest.fixture(scope="module")
def npu_is(npu):
    from neupims.config.overrides import apply_hw_overrides

    return apply_hw_overrides(npu, {"systolic_array": {"stationary_operand": "inputs"}})


def inputs_closed_form(m, n, k, h=128, w=128, arrays=8):
    """The artifact's swapped-operand MatMul written out independently: per 128-row chunk
    and 128-deep K slice a 128-cycle preload, then one weight column block every 128/8
    cycles; the first chunk follows the weight stream, the others run after it."""
    chunk = math.ceil(k / h) * (h + (math.ceil(n / w) - 1) * (w // arrays))
    chunks = math.ceil(m / h)
    return chunks * chunk + h + w - 2, (chunks - 1) * chunk + h + w - 2


@pytest.mark.parametrize("m,n,k", [(512, 3072, 4096), (256, 4096, 1024), (100, 16384, 4096)])
def test_inputs_stationary_closed_form(npu_is, m, n, k):
    t = gemm_tiles(m, n, k, npu_is)
    compute, post = inputs_closed_form(m, n, k)
    assert (t.compute_cycles, t.post_dma_cycles) == (compute, post)
    assert t.dma_bytes == k * n * 2  # weights read once, reused by every chunk
    assert t.macs == m * n * k


def test_inputs_stationary_pads_chunks_and_serialises_after_weights(npu_is, npu):
    from neupims.devices.npu import gemm_cycles

    # any batch up to 128 rows costs one full chunk
    assert (
        gemm_tiles(1, 3072, 4096, npu_is).compute_cycles
        == gemm_tiles(128, 3072, 4096, npu_is).compute_cycles
    )
    # with a weight stream longer than a chunk, chunks 2.. run after the last weight byte:
    # the total exceeds both the DMA and the compute on their own
    dma = 40_000.0
    total, compute = gemm_cycles(512, 3072, 4096, npu_is, lambda b: dma)
    chunk = inputs_closed_form(128, 3072, 4096)[0] - 254
    assert total == dma + 3 * chunk + 254 > max(dma, compute)
    # the weight-stationary mapping overlaps the same stream with its compute
    ws_total, ws_compute = gemm_cycles(512, 3072, 4096, npu, lambda b: dma)
    assert ws_total == max(ws_compute, dma + 254 + 512) < total


def test_inputs_stationary_small_sram_splits_weights(npu_is):
    small = npu_is.model_copy(update={"sram_bytes": 16 * 2**20})
    big, split = gemm_tiles(512, 4096, 4096, npu_is), gemm_tiles(512, 4096, 4096, small)
    assert split.compute_cycles == big.compute_cycles and split.dma_bytes == big.dma_bytes
    # 32 MiB of weights over (8 MiB less one chunk's 2 MiB of inputs and outputs): 6 L2
    # tiles, so only the last tile's chunks wait for the final weights
    chunk = inputs_closed_form(128, 4096, 4096)[0] - 254
    assert split.post_dma_cycles == pytest.approx(3 * chunk / 6 + 254)


def test_stationary_operand_is_validated(npu):
    from neupims.config.overrides import apply_hw_overrides
    from neupims.errors import ConfigError

    with pytest.raises(ConfigError, match="stationary_operand"):
        apply_hw_overrides(npu, {"systolic_array": {"stationary_operand": "outputs"}})

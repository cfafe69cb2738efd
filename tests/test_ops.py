"""Op specs: FLOP and byte counts against closed forms, validation of fields."""

import pytest

from neupims.ops import (
    Attention,
    Conv2d,
    Elementwise,
    Gemm,
    Gemv,
    LutGemm,
    Pool2d,
    QuantGemm,
    SpMM,
    op_from_row,
)


def test_gemm_counts():
    op = Gemm(m=512, n=3072, k=4096, dtype="fp16")
    assert op.flops == 2 * 512 * 3072 * 4096
    assert op.min_bytes == (512 * 4096 + 4096 * 3072 + 512 * 3072) * 2
    assert Gemm(m=2, n=3, k=4, batch=5).flops == 5 * Gemm(m=2, n=3, k=4).flops


def test_gemv_is_a_gemm_with_its_own_name():
    assert Gemv(1, 4096, 4096).flops == Gemm(1, 4096, 4096).flops
    assert Gemv.name == "gemv" and Gemm.name == "gemm"


def test_conv_im2col_and_im2win_sizes_match_kernels_md():
    # Im2win Conv9: N=128, C=64, H=W=56, K=64, 3x3, stride 1, pad 0 -> Ho=54
    # (docs/sources/kernels.md §1.1)
    op = Conv2d(batch=128, c=64, h=56, w=56, kout=64, r=3, s=3, stride=1, pad=0, dtype="fp32")
    assert (op.ho, op.wo) == (54, 54)
    assert op.im2col_elems * 4 / 2**20 == pytest.approx(820.1, abs=0.1)
    assert op.im2win_elems * 4 / 2**20 == pytest.approx(283.5, abs=0.1)
    assert op.flops / 1e9 == pytest.approx(27.52, abs=0.01)


def test_attention_causal_pairs_and_gqa_bytes():
    full = Attention(batch=1, heads=8, kv_heads=8, q_len=4, kv_len=4, head_dim=64)
    causal = Attention(batch=1, heads=8, kv_heads=8, q_len=4, kv_len=4, head_dim=64, causal=True)
    assert full.score_pairs == 16 and causal.score_pairs == 10
    gqa = Attention(batch=2, heads=64, kv_heads=8, q_len=1, kv_len=100, head_dim=128)
    assert gqa.kv_bytes == 2 * 2 * 8 * 100 * 128 * 2


def test_elementwise_traffic():
    add = Elementwise(kind="add", elems=1000, dtype="fp16")
    assert add.min_bytes == 3 * 1000 * 2 and add.flops == 1000


def test_low_bit_ops_scale_with_bits():
    q4, q8 = QuantGemm(1, 4096, 4096, wbits=4), QuantGemm(1, 4096, 4096, wbits=8)
    assert q8.weight_bytes > 1.9 * q4.weight_bytes
    l1, l4 = LutGemm(1, 4096, 4096, wbits=1), LutGemm(1, 4096, 4096, wbits=4)
    assert l4.lookups == 4 * l1.lookups
    assert SpMM(64, 256, 256, sparsity=0.9).flops == pytest.approx(0.1 * Gemm(64, 256, 256).flops)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Gemm(m=0, n=1, k=1), "m must be positive, got 0"),
        (lambda: Gemm(m=1, n=1, k=1, dtype="fp12"), "unknown dtype 'fp12'"),
        (lambda: Conv2d(1, 3, 4, 4, 8, 7, 7), "filter 7x7 larger than padded input 4x4"),
        (lambda: Conv2d(1, 3, 8, 8, 8, 3, 3, algo="winograd3"), "algo must be one of"),
        (lambda: Pool2d(1, 3, 2, 2, 3, 3), "filter 3x3 larger than padded input 2x2"),
        (lambda: Attention(1, 6, 4, 1, 8, 64), "heads (6) must be a multiple of kv_heads (4)"),
        (
            lambda: Attention(1, 4, 4, 9, 8, 64, causal=True),
            "causal attention needs q_len <= kv_len",
        ),
        (lambda: Elementwise(kind="tanhh", elems=4), "kind must be one of"),
        (lambda: SpMM(4, 4, 4, sparsity=1.0), "sparsity must be in [0, 1)"),
    ],
)
def test_invalid_ops_are_rejected_with_the_field_named(make, message):
    with pytest.raises(ValueError) as exc:
        make()
    assert message in str(exc.value)


def test_op_from_row_uses_defaults_for_empty_cells():
    op = op_from_row({"op": "gemm", "m": "4", "n": "8", "k": "16", "batch": "", "dtype": ""})
    assert op == Gemm(4, 8, 16)
    att = op_from_row(
        {
            "op": "attention",
            "batch": "1",
            "heads": "2",
            "kv_heads": "1",
            "q_len": "1",
            "kv_len": "3",
            "head_dim": "8",
            "causal": "true",
        }
    )
    assert att.causal is True

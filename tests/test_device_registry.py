"""The default device model of a kind does not depend on the order modules are imported."""

import subprocess
import sys

import pytest

ORDERS = [
    ["gpu", "npu", "cpu", "roofline"],
    ["roofline", "gpu", "npu", "cpu"],
    ["cpu", "roofline", "npu", "gpu"],
]


@pytest.mark.parametrize("order", ORDERS)
def test_defaults_are_the_detailed_models_in_any_import_order(order):
    code = (
        "import importlib\n"
        f"for m in {order!r}: importlib.import_module('neupims.devices.' + m)\n"
        "from neupims.config import load_hw\n"
        "from neupims.devices import get_model\n"
        "print(*[get_model(load_hw(n)).name for n in ('h100_sxm', 'npu_neupims', 'xeon_8480', 'hbm2_pim_neupims')])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["gpu", "npu", "cpu", "roofline"]

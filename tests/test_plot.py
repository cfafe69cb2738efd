"""`neupims plot` redraws figures from stored results; figure styles and their errors."""

from __future__ import annotations

import pytest

from neupims.cli import main
from neupims.errors import ConfigError
from neupims.experiments import FigureSpec, run
from neupims.plots import axis_label, draw_figures, plot_dir

EXPERIMENT = {
    "name": "figs",
    "kind": "synthetic",
    "sweep": {"grid": {"x": [1.0, 2.0, 4.0], "y": [0, 3], "label": ["a", "b"]}},
    "figures": [
        {"type": "lines", "x": "x", "y": "latency_s", "hue": "label", "style": "y", "logx": True},
        {"type": "grouped_bars", "x": "x", "y": "value", "hue": "label", "facet": "y",
         "normalise_to": {"label": "a"}},
        {"type": "parity", "x": "value", "y": "measured", "hue": "label"},
        {"type": "roofline", "hue": "label", "peak_flops_per_s": "peak_flops_per_s",
         "bytes_per_s": "bytes_per_s"},
    ],
}  # fmt: skip

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    run(EXPERIMENT, out, jobs=1, progress=False, figures=False)
    return out


def test_plot_cli_redraws_png_and_pdf_from_stored_results(stored, capsys):
    assert not (stored / "figures").exists()  # the run drew nothing
    assert main(["plot", str(stored)]) == 0
    stems = ["lines_latency_s_vs_x", "grouped_bars_value_vs_x", "parity_measured_vs_value"]
    for stem in [*stems, "roofline"]:
        png, pdf = stored / "figures" / f"{stem}.png", stored / "figures" / f"{stem}.pdf"
        assert png.read_bytes()[:8] == PNG_MAGIC
        assert pdf.read_bytes()[:5] == b"%PDF-"
    assert capsys.readouterr().out.count("figures/") == 8


def test_plot_of_a_folder_without_results_is_a_clear_error(tmp_path):
    assert main(["plot", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match=r"no experiment.yaml; run `neupims run"):
        plot_dir(tmp_path)


def _draw(stored, tmp_path, **fig):
    import pandas as pd

    df = pd.read_csv(stored / "results.csv")
    return draw_figures([FigureSpec(**fig)], df, tmp_path, "exp.yaml", formats=("png",))


def test_unknown_figure_column_and_missing_reference_are_precise_errors(stored, tmp_path):
    with pytest.raises(ConfigError, match=r"exp.yaml: figures\[0\].hue: no column 'lbl'"):
        _draw(stored, tmp_path, type="lines", x="x", y="value", hue="lbl")
    with pytest.raises(
        ConfigError, match=r"normalise_to: no row with label = 'zz' in group x = 1.0"
    ):
        _draw(stored, tmp_path, type="grouped_bars", x="x", y="value", hue="label",
              normalise_to={"label": "zz"})  # fmt: skip


def test_lines_are_distinguishable_without_colour(stored):
    import matplotlib.pyplot as plt
    import pandas as pd

    from neupims.plots import DRAWERS

    df = pd.read_csv(stored / "results.csv")
    fs = FigureSpec(type="lines", x="x", y="value", hue="label", style="y")
    fig = DRAWERS["lines"](fs, df)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # 2 labels x 2 styles
    assert len({(ln.get_marker(), ln.get_linestyle()) for ln in lines}) == 4
    plt.close(fig)


def test_normalised_bars_divide_by_the_reference_bar(stored):
    import matplotlib.pyplot as plt
    import pandas as pd

    from neupims.plots import DRAWERS

    df = pd.read_csv(stored / "results.csv")
    df.loc[df["label"] == "b", "value"] *= 3  # b is 3x a in every group
    fs = FigureSpec(type="grouped_bars", x="x", y="value", hue="label", normalise_to={"label": "a"})
    fig = DRAWERS["grouped_bars"](fs, df[df["y"] == 0])
    heights = [round(p.get_height(), 9) for p in fig.axes[0].patches]
    assert heights == [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]
    hatches = {p.get_hatch() for p in fig.axes[0].patches}
    assert len(hatches) == 2  # bars differ by hatch, not only by gray level
    plt.close(fig)


def test_axis_labels_carry_units():
    assert axis_label("latency_s") == "latency (s)"
    assert axis_label("tokens_per_s") == "throughput (tokens/s)"
    assert axis_label("kv_cache_bytes") == "kv cache (B)"
    assert axis_label("energy_j") == "energy (J)"
    assert axis_label("anything", "custom (u)") == "custom (u)"


def test_figure_order_puts_listed_values_first_then_the_rest_sorted():
    import pandas as pd

    from neupims.plots import _ordered

    vals = pd.Series(["npu_pim", "neupims", "gpu_only", "npu_only", "extra"])
    assert _ordered(vals, ["gpu_only", "npu_only", "npu_pim", "neupims"]) == [
        "gpu_only",
        "npu_only",
        "npu_pim",
        "neupims",
        "extra",
    ]
    assert _ordered(vals) == sorted(vals)


def test_figure_order_keys_must_be_columns_the_figure_uses():
    import pytest
    from pydantic import ValidationError

    from neupims.experiments.spec import FigureSpec

    with pytest.raises(
        ValidationError, match=r"order names \['colour'\], which this figure does not use"
    ):
        FigureSpec(type="lines", x="batch", y="latency_s", order={"colour": ["a"]})
    with pytest.raises(ValidationError, match="facet_title may use only"):
        FigureSpec(type="lines", x="batch", y="latency_s", facet_title="{panel}")


def test_legend_wraps_to_the_figure_width_instead_of_running_off_it():
    from neupims.plots import LEGEND_CHAR_IN, LEGEND_HANDLE_IN, _legend_columns

    labels = ["NPU-only", "NPU+PIM", "+dual row buffer", "+GMLBP", "+SBI", "+adaptive SBI"]
    ncol = _legend_columns(labels, 4.2)
    entry = LEGEND_HANDLE_IN + LEGEND_CHAR_IN * max(map(len, labels))
    assert 1 <= ncol < len(labels) and ncol * entry <= 4.2
    assert _legend_columns(labels, 16.8) == 6  # a wide, faceted figure keeps one row
    assert _legend_columns(["a", "b"], 4.2) == 2


def test_bar_groups_are_centred_on_their_ticks(tmp_path):
    import matplotlib.pyplot as plt
    import pandas as pd

    from neupims.experiments.spec import FigureSpec
    from neupims.plots import _grouped_bars

    df = pd.DataFrame(
        {
            "system": ["a", "b", "c"] * 2,
            "util": [0.3, 0.5, 0.4, 0.2, 0.6, 0.1],
            "hw": ["x"] * 3 + ["y"] * 3,
        }
    )
    for hue in (None, "hw"):
        fig = _grouped_bars(FigureSpec(type="grouped_bars", x="system", y="util", hue=hue), df)
        fig = fig if fig is not None else plt.gcf()
        ax = fig.axes[0]
        centres = sorted(p.get_x() + p.get_width() / 2 for p in ax.patches if p.get_height() > 0)
        if hue is None:  # one bar per category (two rows averaged), on its tick
            assert centres == [0.0, 1.0, 2.0]
        else:  # two bars per category, symmetric about its tick
            assert len(centres) == 6
            assert abs(sum(c - round(c) for c in centres)) < 1e-9
        plt.close("all")


def test_long_legend_widens_a_narrow_figure_to_at_most_three_rows():
    import matplotlib.pyplot as plt

    from neupims.plots import MAX_LEGEND_ROWS, _finish

    labels = ["NPU-only", "NPU+PIM", "+dual row buffer", "+GMLBP", "+SBI", "+adaptive SBI",
              "NPU+PIM +SBI (blocked)", "+SBI +dual row buffer"]  # fmt: skip
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for i, lab in enumerate(labels):
        ax.bar([i], [1.0], label=lab)
    _finish(fig, "t", outside=True)
    leg = fig.legends[0]
    assert fig.get_figwidth() > 4.2
    assert len(labels) <= MAX_LEGEND_ROWS * leg._ncols
    plt.close(fig)

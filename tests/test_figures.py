"""Golden checks of the figures and reports of every command on calibrated input: every map
carries a scale bar in SI length units, every colour bar says what it shows, non-square pixels
stay non-square, lengths get a sensible SI prefix; reports put figures first, round numbers,
and say where the result came from."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib_scalebar.scalebar import ScaleBar

from latentatlas.io import Axis, Dataset
from latentatlas.io.calibration import Calibration, nice_length_unit
from latentatlas.plots.style import safe_label, save_figure

# pixels of 7.9 nm (rows) x 3.9 nm (columns), the non-square case of the issue
ROW_NM, COL_NM = 7.9, 3.9


def _is_colorbar(ax: Axes) -> bool:
    return getattr(ax, "_colorbar", None) is not None


def _scalebars(ax: Axes) -> list[ScaleBar]:
    return [c for c in ax.get_children() if isinstance(c, ScaleBar)]


def check_figure(fig: Figure, maps: bool) -> None:
    """Every colour bar is labelled; with ``maps``, every panel that is not a colour bar and
    shows an image or points has a scale bar in SI length units."""
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if _is_colorbar(ax):
            assert ax.get_ylabel() or ax.get_xlabel(), f"unlabelled colour bar in {fig}"
            continue
        if maps and (ax.images or ax.collections):
            bars = _scalebars(ax)
            assert bars, f"map without a scale bar: {ax.get_title()!r}"
            assert type(bars[0].dimension).__name__ == "SILengthDimension"
            assert bars[0].units in ("pm", "nm", "um", "mm")


def check_aspect(ax: Axes, rows: int, cols: int) -> None:
    """The first image of ``ax`` spans its physical size: width/height = cols*3.9 / rows*7.9."""
    left, right, bottom, top = ax.images[0].get_extent()
    assert (right - left) / (bottom - top) == pytest.approx(cols * COL_NM / (rows * ROW_NM),
                                                            rel=1e-6)


def _calibrated(data: np.ndarray, units: str = "nm", factor: float = 1.0) -> list[Axis]:
    lead = [Axis(f"axis_{i}") for i in range(data.ndim - 2)] if data.ndim > 2 else []
    return [*lead, Axis("y", scale=ROW_NM * factor, units=units, kind="spatial"),
            Axis("x", scale=COL_NM * factor, units=units, kind="spatial")]


# ------------------------------------------------------------------------------ units


def test_calibration_units_and_prefixes() -> None:
    assert nice_length_unit(1e-8) == ("nm", 1e-9)
    assert nice_length_unit(2.5e-6) == ("µm", 1e-6)
    cal = Calibration.from_axes([Axis("y", scale=4e-10, units="m"),
                                 Axis("x", scale=4e-10, units="m")])
    shown = cal.nice((50, 50))  # a 20 nm field saved in metres
    assert shown.units == "nm" and shown.scale == pytest.approx((0.4, 0.4))
    # mixed units become one; non-square pixels stay non-square
    mixed = Calibration.from_axes([Axis("y", scale=0.79, units="nm"),
                                   Axis("x", scale=3.9, units="Å")])
    assert mixed.units == "nm" and mixed.scale == pytest.approx((0.79, 0.39))
    assert not Calibration.from_axes([Axis("y", units="V"), Axis("x", units="V")]).calibrated
    assert "7.9 (y) x 3.9 (x) nm" in Calibration((7.9, 3.9), units="nm").describe()


def test_labels_from_files_are_safe_for_mathtext() -> None:
    fig = Figure()
    ax = fig.subplots()
    for text in ("$\\sqrt E$", "$(V/m)^{0.5}$", "a $ b", "$\\mu$m"):
        ax.set_xlabel(safe_label(text))
        fig.canvas.draw()  # raised ParseSyntaxException for $\sqrt E$
    assert safe_label("$\\mu$m") == "$\\mu$m"  # valid mathtext is kept


# ------------------------------------------------------------------------------ commands


def test_unmix_figures_are_calibrated(tmp_path: Path) -> None:
    from latentatlas.datasets.spectral import make_spectral_cube
    from latentatlas.spectral import unmix

    s = make_spectral_cube("eels", shape=(12, 20), n_channels=32, seed=0)
    cube = Dataset(s.cube, [*_calibrated(s.cube[..., 0]), Axis("E", 0.5, 100.0, "eV")])
    for method in ("pca", "kmeans", "isomap"):
        opts = {"n_neighbors": 60} if method == "isomap" else {}
        figs = unmix(cube, method, 2, **opts).plot()
        for name, fig in figs.items():
            check_figure(fig, maps=name != "scree")
        key = {"pca": "components", "kmeans": "clusters", "isomap": "maps"}[method]
        map_ax = next(ax for ax in figs[key].axes if ax.images and not _is_colorbar(ax))
        check_aspect(map_ax, 12, 20)
    # an SPM cube in metres: the maps read in nm (not "m" with a 1e-8 offset)
    spm = Dataset(s.cube, [Axis("y", 2e-10, units="m"), Axis("x", 2e-10, units="m"),
                           Axis("Bias", 0.01, units="V")])
    fig = unmix(spm, "pca", 2).plot()["components"]
    bars = [b for ax in fig.axes for b in _scalebars(ax)]
    assert bars and {b.units for b in bars} == {"nm"}


def test_scree_plot_is_not_clipped(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from latentatlas.plots.spectral import plot_scree

    ax = plot_scree(np.array([0.6, 0.3, 0.07, 0.03]))
    fig = ax.figure
    assert isinstance(fig, Figure)
    path = save_figure(fig, tmp_path / "scree.png", formats=("svg", "pdf"))
    h, w = imread(path).shape[:2]
    assert w >= 700 and h >= 500  # was 480 x 360
    # every label lies inside the figure itself (the old scree clipped the right-hand one)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    labels = [a.yaxis.label for a in fig.axes] + [ax.xaxis.label, ax.title]
    for label in labels:
        ext = label.get_window_extent(renderer)
        assert label.get_text()
        assert fig.bbox.x0 <= ext.x0 and ext.x1 <= fig.bbox.x1, label.get_text()
        assert fig.bbox.y0 <= ext.y0 and ext.y1 <= fig.bbox.y1, label.get_text()
    assert (tmp_path / "scree.svg").stat().st_size > 1000
    assert (tmp_path / "scree.pdf").read_bytes().startswith(b"%PDF")


def test_analyze_figures_are_calibrated(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    from latentatlas.datasets.lattices import two_site_lattice
    from latentatlas.pipelines.analyze import analyze

    img = two_site_lattice(shape=(128, 96)).image
    data = Dataset(img, _calibrated(img))
    res = analyze(data, atoms="peaks", epochs=1, train_samples=64, progress=False,
                  out=tmp_path / "run", figure_formats=("svg",))
    assert res.calibration.scale == (ROW_NM, COL_NM)
    assert "pixels are not square (7.9 (y) x 3.9 (x) nm" in caplog.text  # said, not silent
    figs = res.plot()
    for name, fig in figs.items():
        check_figure(fig, maps=name in ("image", "latent_maps", "labels"))
    check_aspect(figs["image"].axes[0], 128, 96)
    labels = [ax.get_ylabel() for ax in figs["latent_maps"].axes if _is_colorbar(ax)]
    assert "angle (deg)" in labels and "shift x (nm)" in labels and "z1 (unitless)" in labels
    assert (tmp_path / "run" / "latent_maps.svg").exists()
    report = (tmp_path / "run" / "index.html").read_text()
    assert "7.9 (y) x 3.9 (x) nm per pixel" in report
    assert "mean" not in repr(res) and len(repr(res)) < 400
    assert "<table" in res._repr_html_()


def test_walls_figures_are_calibrated(tmp_path: Path) -> None:
    pytest.importorskip("rsciio")
    from latentatlas.io.hyperspy import save_hspy, signal_dict
    from latentatlas.pipelines.walls import run_walls

    yy, xx = np.mgrid[:40, :60]
    image = np.where((xx - 30) ** 2 + (yy - 20) ** 2 < 150, 90.0, -90.0)
    path = save_hspy(tmp_path / "phase.hspy", signal_dict(image, _calibrated(image), 2, "phase"))
    run = run_walls(path, "canny", tmp_path / "walls", phase=True)
    assert run.calibration.scale == (ROW_NM, COL_NM)
    for fig in run.plot().values():
        check_figure(fig, maps=True)
        check_aspect(fig.axes[0], 40, 60)
    assert (tmp_path / "walls" / "walls.hspy").exists()


def test_graphene_figures_are_calibrated(tmp_path: Path) -> None:
    from latentatlas.pipelines.graphene import analyze_graphene

    res = analyze_graphene("example:graphene", model="jvae", epochs=1)
    assert res.calibration.calibrated
    for name, fig in res.plot().items():
        check_figure(fig, maps=name in ("rings", "angle", "labels"))
    assert "GrapheneResult(" in repr(res) and len(repr(res)) < 500


# ------------------------------------------------------------------------------ report


def test_report_layout_rounding_and_provenance(tmp_path: Path) -> None:
    from latentatlas.pipelines.unmix import run_unmix

    cube = np.random.default_rng(0).random((6, 7, 20)).astype(np.float32)
    np.save(tmp_path / "cube.npy", cube)
    run_unmix(tmp_path / "cube.npy", "pca", 2, tmp_path / "out")
    html = (tmp_path / "out" / "index.html").read_text()
    first_figure = html.index("<figure>")
    assert first_figure < html.index("<table")  # figures before any table
    assert html.index("<h2>Summary</h2>") < html.index("<details>")  # parameters folded
    digest = hashlib.sha256((tmp_path / "cube.npy").read_bytes()).hexdigest()
    assert digest in html and "latentatlas 0.1.0" in html
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", html)
    # no number is printed to 15 digits
    assert not re.search(r"\d\.\d{8,}", re.sub(r"base64,[^\"]+", "", html))


def test_write_report_rounds_and_escapes(tmp_path: Path) -> None:
    from latentatlas.report import write_report
    from latentatlas.report.html import format_value

    assert format_value(12345.678901234) == "12346"
    assert format_value(0.000123456789) == "0.0001235"
    assert format_value([1.23456789, 2]) == "[1.235, 2]"
    path = write_report(tmp_path / "r.html", "<b>t</b>", summary={"BIC": {"2": 1234.56789}},
                        verdict="better than <PCA>", tables={"P": {"a": 1}})
    text = path.read_text()
    assert "&lt;b&gt;t&lt;/b&gt;" in text and "better than &lt;PCA&gt;" in text
    assert "BIC.2" in text and "1235" in text and "1234.56789" not in text

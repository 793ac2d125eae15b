"""The unmix command and the spectral figures."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from typer.testing import CliRunner

from latentatlas.datasets.spectral import make_spectral_cube
from latentatlas.io.calibration import Calibration
from latentatlas.plots.spectral import (
    plot_cluster_map,
    plot_components,
    plot_result,
    plot_scree,
    save_figures,
)
from latentatlas.spectral import UnmixResult, unmix

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s = make_spectral_cube("eels", shape=(16, 16), n_channels=48, seed=0)
    path = tmp_path_factory.mktemp("cube") / "cube.npy"
    np.save(path, s.cube)
    return path


def _app():  # type: ignore[no-untyped-def]
    import latentatlas.cli  # noqa: F401  (registers every command)
    from latentatlas.cli.app import app

    return app


@pytest.mark.parametrize("method", ["nmf", "kmeans"])
def test_cli_writes_result_figures_and_params(cube_file: Path, tmp_path: Path,
                                              method: str) -> None:
    out = tmp_path / "run"
    res = CliRunner().invoke(_app(), ["unmix", str(cube_file), "--method", method, "-k", "3",
                                      "--out", str(out), "-p", "max_iter=50", "--quiet"])
    assert res.exit_code == 0, res.output
    result = UnmixResult.load(out / f"{method}.h5")
    assert result.method == method and result.spatial_shape == (16, 16)
    params = json.loads((out / f"{method}_params.json").read_text())
    assert params["params"]["options"] == {"max_iter": 50}
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ([f"{method}_components.png"] if method == "nmf"
                    else [f"{method}_clusters.png"])
    assert (out / "index.html").exists() and (out / "explorer.html").exists()
    assert not list(out.glob(".*"))  # no temporary files left


def test_cli_reports_bad_input(tmp_path: Path) -> None:
    flat = tmp_path / "flat.npy"
    np.save(flat, np.ones(20, dtype=np.float32))
    res = CliRunner().invoke(_app(), ["unmix", str(flat), "--method", "pca", "--out",
                                      str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 2
    assert "line scan (n, channels)" in res.output
    assert not (tmp_path / "o" / "pca.h5").exists()


def test_scree_plot_draws_ratios() -> None:
    ratio = np.array([0.6, 0.3, 0.1])
    ax = plot_scree(ratio)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), ratio)
    with pytest.raises(ValueError, match="1-D"):
        plot_scree(np.ones((2, 2)))


def test_components_use_physical_axes() -> None:
    s = make_spectral_cube("cits", shape=(10, 12), n_channels=32, seed=0)
    res = unmix(s.cube, "pca", 2, axis=s.energy)
    assert res.components is not None and res.loadings is not None
    fig = plot_components(res.components, res.loadings, res.energy, "Bias", "V",
                          calibration=Calibration(scale=(2e-9, 2e-9), units="m"))
    spec_ax, map_ax = fig.axes[2], fig.axes[3]
    np.testing.assert_allclose(spec_ax.lines[0].get_xdata(), s.energy)
    assert spec_ax.get_xlabel() == "Bias (V)"
    # metres shown in nm, pixel centres at their positions: 12 x 10 pixels of 2 nm
    np.testing.assert_allclose(map_ax.images[0].get_extent(), [-1.0, 23.0, 19.0, -1.0])


def test_cluster_map_colours_match_spectra() -> None:
    labels = np.array([[0, 1, 2], [2, -1, 0]])
    means = np.arange(12, dtype=float).reshape(3, 4)
    fig = plot_cluster_map(labels, means, np.linspace(0, 1, 4), "Energy", "eV", fig=Figure())
    map_ax, spec_ax = fig.axes[:2]
    im = map_ax.images[0]
    rgba = im.cmap(im.norm(labels))
    for i in range(3):
        line_color = to_rgba(spec_ax.lines[i].get_color())
        for r, c in zip(*np.nonzero(labels == i), strict=True):
            np.testing.assert_allclose(rgba[r, c], line_color)
    np.testing.assert_allclose(rgba[1, 1], (0.75, 0.75, 0.75, 1.0))  # noise is grey
    with pytest.raises(ValueError, match="cluster means"):
        plot_cluster_map(np.full((2, 2), 5), means)


def test_plot_result_and_save_figures(tmp_path: Path) -> None:
    s = make_spectral_cube("eels", shape=(8, 8), n_channels=24, seed=0)
    pca = unmix(s.cube, "pca", 2)
    assert set(plot_result(pca)) == {"scree", "components"}
    paths = save_figures(pca, tmp_path)
    assert {p.name for p in paths} == {"pca_scree.png", "pca_components.png"}
    assert all(p.stat().st_size > 1000 for p in paths)
    iso = unmix(s.cube, "isomap", 2)
    assert set(plot_result(iso)) == {"maps"}

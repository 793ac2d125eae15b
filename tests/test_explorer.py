"""The explorer without a browser: inputs checked once, sprite sheets, the written file, and
the adapters from result objects (the browser tests are in test_explorer_browser.py)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from latentatlas.datasets.domains import domain_pattern, render_pfm
from latentatlas.datasets.spectral import make_spectral_cube
from latentatlas.descriptors.walls import find_walls, wall_patches
from latentatlas.models import get_model
from latentatlas.pipelines.analyze import analyze
from latentatlas.pipelines.graphene import analyze_graphene, example_graphene
from latentatlas.report import explorer as ex
from latentatlas.report.explorer import ExplorerData, SpectralExplorerData, sprite_sheet, write_explorer
from latentatlas.report.explorer_adapters import (
    explorer_data,
    from_analysis,
    from_graphene,
    from_unmix,
    from_walls,
    patch_baselines,
)
from latentatlas.spectral import unmix


def small_data(n: int = 50, **kw: Any) -> ExplorerData:
    rng = np.random.default_rng(0)
    args: dict[str, Any] = dict(
        frames=rng.normal(size=(40, 50)), positions=rng.uniform(5, 35, (n, 2)),
        values={"z1": rng.normal(size=n), "z2": rng.normal(size=n),
                "class": rng.integers(0, 3, n)},
        std={"z1": np.full(n, 0.1)}, categorical=("class",),
        patches=rng.normal(size=(n, 9, 9)), reconstructions=rng.normal(size=(n, 9, 9)), window=9)
    args.update(kw)
    return ExplorerData(**args)


# ------------------------------------------------------------------------------ inputs


@pytest.mark.parametrize(("change", "message"), [
    ({"positions": np.zeros((50, 3))}, r"positions must be \(n, 2\)"),
    ({"values": {"z1": np.zeros(49)}}, r"values\['z1'\] must be \(n,\) = \(50,\)"),
    ({"values": {"_x": np.zeros(50)}}, r"not start with '_'"),
    ({"categorical": ("z1",)}, r"categorical value 'z1' must hold integer classes"),
    ({"frame_index": np.full(50, 1)}, r"frame_index must be .* integers in \[0, 1\)"),
    ({"patches": np.zeros((49, 9, 9))}, r"patches must be \(n, p, p\) with n = 50"),
    ({"std": {"z9": np.zeros(50)}}, r"not in values: \['z9'\]"),
    ({"scatter": ("z1", "nope")}, r"scatter .* must name two values"),
    ({"frames": np.full((40, 50), np.nan)}, r"frames contains 2000 NaN"),
])
def test_bad_inputs_are_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_data(**change)


def test_defaults_pick_content_latents_and_the_first_class() -> None:
    d = small_data(values={"angle": np.zeros(50), "z1": np.ones(50), "z2": np.ones(50),
                           "class": np.zeros(50)}, std={})
    assert d.scatter == ("z1", "z2")
    assert d.color == "class"


def test_spectral_inputs_are_checked() -> None:
    cube = np.ones((4, 5, 6), np.float32)
    with pytest.raises(ValueError, match=r"energy must have one value per channel \(6\)"):
        SpectralExplorerData(spectra=cube, energy=np.arange(5), maps={"a": np.ones((4, 5))})
    with pytest.raises(ValueError, match="give components and loadings together"):
        SpectralExplorerData(spectra=cube, energy=np.arange(6), maps={"a": np.ones((4, 5))},
                             components=np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"maps \['a'\] must be \(ny, nx\) = \(4, 5\)"):
        SpectralExplorerData(spectra=cube, energy=np.arange(6), maps={"a": np.ones((5, 4))})
    with pytest.raises(ValueError, match="bin it spatially or crop"):
        SpectralExplorerData(spectra=np.zeros((100, 100, 801), np.float32),
                             energy=np.arange(801), maps={"a": np.ones((100, 100))})


# ------------------------------------------------------------------------------ thumbnails


def test_sprite_sheet_puts_tile_i_at_its_offset_on_its_own_scale() -> None:
    rng = np.random.default_rng(1)
    # smooth tiles (JPEG keeps them) with very different ranges (each gets its own scale)
    yy, xx = np.mgrid[0:13, 0:13] / 12.0
    freq = rng.uniform(0.5, 2.0, (23, 2))
    tiles = np.stack([np.sin(3 * f0 * yy) + np.cos(3 * f1 * xx) for f0, f1 in freq])
    tiles = (tiles * rng.uniform(0.1, 50.0, 23)[:, None, None]).astype(np.float32)
    low, high = tiles.min(axis=(1, 2)), tiles.max(axis=(1, 2))
    jpeg, cols, stride = sprite_sheet(tiles, low, high)
    sheet = np.asarray(Image.open(io.BytesIO(jpeg))).astype(float)
    assert (cols, stride) == (5, 16) and sheet.shape == (5 * 16, 5 * 16)
    for i in (0, 6, 22):
        r, c = divmod(i, cols)
        tile = sheet[r * stride:r * stride + 13, c * stride:c * stride + 13]
        expected = (tiles[i] - low[i]) / (high[i] - low[i]) * 255
        assert np.abs(tile - expected).mean() < 4  # grey levels: JPEG at quality 85
        neighbour = (tiles[i + 1 - 2 * (i == 22)] - low[i]) / (high[i] - low[i]) * 255
        assert np.abs(tile - neighbour).mean() > 10 * np.abs(tile - expected).mean()


def test_large_thumbnails_are_averaged_down() -> None:
    tiles = np.arange(2 * 70 * 70, dtype=np.float32).reshape(2, 70, 70)
    small = ex._shrink(tiles)
    assert small.shape == (2, 23, 23)  # 70 px -> blocks of 3 -> 23 px, <= MAX_THUMBNAIL
    assert small[0, 0, 0] == pytest.approx(tiles[0, :3, :3].mean())


def test_written_file_is_self_contained_and_complete(tmp_path: Path) -> None:
    path = write_explorer(tmp_path / "sub" / "explorer.html", small_data())
    text = path.read_text()
    assert not re.search(r"<script[^>]+src=", text)  # BokehJS is inlined: opens offline
    assert not re.search(r"<link[^>]+href=\"http", text)
    for kind in ("patches", "reconstructions"):  # one sprite sheet each
        assert text.count(f'"--la-{kind}","url(data:image/jpeg;base64,') == 1
    assert "scatter_figure" in text and "image_points" in text
    assert [p.name for p in path.parent.iterdir()] == ["explorer.html"]  # no temporary left


def test_explore_shows_the_layout_the_file_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    import bokeh.io

    shown: list[Any] = []
    monkeypatch.setattr(bokeh.io, "output_notebook", lambda **kw: None)
    monkeypatch.setattr(bokeh.io, "show", shown.append)
    data = small_data()
    layout = ex.explore(data)
    assert shown == [layout]

    def names(root: Any) -> set[str]:
        return {m.name for m in root.references() if m.name}

    assert names(layout) == names(ex.explorer_layout(data))
    with pytest.raises(ValueError, match="backend must be one of"):
        ex.explore(data, backend="svg")
    assert {"image_points", "scatter_points", "points", "color_select"} <= names(layout)


# ------------------------------------------------------------------------------ adapters


def test_patch_baselines_are_plain_statistics() -> None:
    rng = np.random.default_rng(2)
    p = rng.normal(size=(300, 6, 6)) * np.linspace(0.1, 3, 36).reshape(6, 6)
    b = patch_baselines(p)
    np.testing.assert_allclose(b["patch_mean"], p.reshape(300, -1).mean(1), atol=1e-6)
    np.testing.assert_allclose(b["patch_std"], p.reshape(300, -1).std(1), rtol=1e-4)
    assert b["pca1"].var() >= b["pca2"].var() > 0


@pytest.fixture(scope="module")
def lattice_run() -> Any:
    return analyze("example:lattice-small", epochs=1, progress=False)


def test_from_analysis_carries_the_results_values(lattice_run: Any) -> None:
    r = lattice_run
    d = from_analysis(r, pixel_size=0.02, units="nm")
    for j, name in enumerate(r.maps.names):
        np.testing.assert_array_equal(d.values[name], r.maps.values[:, j])
        np.testing.assert_array_equal(d.std[name], r.maps.std[:, j])
    np.testing.assert_array_equal(d.values["class"], r.labels.labels)
    np.testing.assert_array_equal(d.positions, r.patches.centers)
    assert d.patches is not None and d.reconstructions is not None
    assert d.patches.shape == d.reconstructions.shape == (len(r.patches), r.patches.window,
                                                          r.patches.window)
    np.testing.assert_allclose(d.reconstructions[:3],
                               r.model.reconstruct(r.patches.as_model_input()[:3])[:, 0],
                               atol=1e-5)
    # generated example: the true class of (nearly) every atom is found
    assert (d.values["true_class"] >= 0).mean() > 0.9
    assert d.units == "nm" and d.manifold is not None and d.manifold.shape[:2] == (8, 8)
    assert explorer_data(r, reconstructions=False).reconstructions is None


def test_from_graphene_reconstructs_the_cvae_with_each_atoms_class() -> None:
    sheet = example_graphene(seed=0, size=96)
    r = analyze_graphene(sheet.image, coords=sheet.coords, model="cvae", epochs=1, hidden=32)
    d = from_graphene(r)
    assert d.categorical == ("prediction", "ring_label", "labelled")
    np.testing.assert_array_equal(d.values["ring_label"], r.ring_labels)
    np.testing.assert_array_equal(d.positions, r.centers)
    # an atom is decoded with its own class; another class gives another image
    i = 0
    own = list(r.class_ids).index(int(r.ring_labels[i]))
    X = r.patches.as_model_input()[i:i + 1]
    assert d.reconstructions is not None
    np.testing.assert_allclose(d.reconstructions[i], r.model.reconstruct(X, condition=[own])[0, 0],
                               atol=1e-5)
    other = (own + 1) % len(r.class_ids)
    assert not np.allclose(d.reconstructions[i], r.model.reconstruct(X, condition=[other])[0, 0],
                           atol=1e-4)
    assert d.window == pytest.approx(r.patches.window / r.scale)
    assert d.manifold is not None and d.manifold.shape[0] == len(r.class_ids)


def test_from_walls_adds_the_physical_descriptors_of_each_patch() -> None:
    dom = domain_pattern((64, 64), "stripes", seed=0, scale=10)
    phase, _ = render_pfm(dom, seed=0, phase_noise=5)
    walls = find_walls(phase, "gaussian", phase=True)
    patches = wall_patches(phase, walls, window=12, max_patches=200)
    model = get_model("rvae", input_shape=(12, 12), latent_dim=2)
    latents = model.encode(patches.as_model_input())
    d = from_walls(phase, walls, patches, latents, model=model)
    assert {"wall_count", "switching_degree", "curvature", "z1", "pca1"} <= set(d.values)
    # every patch sits on a wall between the two states: both states are in it
    assert (d.values["switching_degree"] > 0).all() and (d.values["switching_degree"] < 1).all()
    assert d.reconstructions is not None and len(d.reconstructions) == len(patches)


@pytest.fixture(scope="module")
def eels() -> Any:
    return make_spectral_cube("eels", shape=(16, 20), n_channels=64, n_components=3,
                              noise="poisson", counts=400, seed=1)


@pytest.mark.parametrize("method", ["pca", "nmf"])
def test_from_unmix_reconstructs_as_the_method_did(eels: Any, method: str) -> None:
    result = unmix(eels.cube, method, 3, axis=eels.energy, crop=(eels.energy[4], None), bin=2)
    d = from_unmix(result, eels.cube, axis=eels.energy)
    assert d.spectra.shape == (8, 10, 60)
    assert d.loadings is not None and d.components is not None
    rec = np.einsum("yxk,kc->yxc", d.loadings, d.components) + d.offset
    # the explorer's reconstruction has the run's own relative error
    err = np.linalg.norm(d.spectra - rec) / np.linalg.norm(d.spectra)
    assert err == pytest.approx(result.reconstruction_error, rel=1e-3)
    np.testing.assert_allclose(d.reconstruction(3, 4), rec[3, 4], rtol=1e-5)
    assert "relative residual" in d.maps


def test_from_unmix_clusters_reconstruct_with_their_mean(eels: Any) -> None:
    result = unmix(eels.cube, "kmeans", 3, axis=eels.energy)
    d = from_unmix(result, eels.cube, axis=eels.energy)
    assert d.categorical == ("labels",)
    assert result.labels is not None and result.cluster_means is not None
    r, c = 5, 7
    np.testing.assert_allclose(d.reconstruction(r, c), result.cluster_means[result.labels[r, c]],
                               rtol=1e-5)


def test_from_unmix_refuses_a_cube_that_does_not_fit(eels: Any) -> None:
    result = unmix(eels.cube, "pca", 2)
    with pytest.raises(ValueError, match="pass the cube .* that were given to unmix"):
        from_unmix(result, eels.cube[:, :10])
    with pytest.raises(ValueError, match="pass cube="):
        explorer_data(result)

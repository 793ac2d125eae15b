"""The explorer in a real browser: headless Chromium (the distribution's package) driven by
Playwright. Skips, saying why, when Playwright or Chromium is missing (``.ci/run`` installs
Chromium with apt; Playwright comes with the test extra).

Screenshots go to ``$LATENTATLAS_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repo).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from latentatlas.datasets.spectral import make_spectral_cube
from latentatlas.pipelines.analyze import analyze
from latentatlas.report.explorer import THUMBNAIL_ZOOM, ExplorerData, write_explorer
from latentatlas.report.explorer_adapters import from_analysis, from_unmix
from latentatlas.spectral import unmix

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(os.environ.get("LATENTATLAS_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[1] / "test-artifacts"))
PIXEL_NM = 0.05

# page coordinates (CSS px) of data point (x, y) in the figure named `name`
TO_PAGE = """([name, x, y]) => {
  const fig = Bokeh.documents[0].get_model_by_name(name), view = Bokeh.index.find_one(fig)
  const box = view.el.getBoundingClientRect()
  return [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)]
}"""
READY = "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
# samples drawn highlighted on the image: selected in its renderer's source and shown by its view
# (the current frame)
IMAGE_HIGHLIGHTED = """() => {
  const r = Bokeh.documents[0].get_model_by_name('image_points'), shown = r.view.indices
  return Array.from(r.data_source.selected.indices).filter((i) => shown.get(i)).sort((a, b) => a - b)
}"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium on this machine (install the distribution's package: "
                "apt-get install chromium); the browser tests need it")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright for Python is not installed (test extra)")
    executable = _chromium()
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A page of the browser that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1300, "height": 1150})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function(READY, polling="raf", timeout=60_000)

    def to_page(self, figure: str, x: float, y: float) -> tuple[float, float]:
        px, py = self.page.evaluate(TO_PAGE, [figure, x, y])
        return float(px), float(py)

    def drag(self, figure: str, x0: float, y0: float, x1: float, y1: float) -> None:
        a, b = self.to_page(figure, x0, y0), self.to_page(figure, x1, y1)
        mouse = self.page.mouse
        mouse.move(*a)
        mouse.down()
        mouse.move((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, steps=4)
        mouse.move(*b, steps=4)
        mouse.up()

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _edge_in_gap(values: np.ndarray, q: float) -> float:
    """A box edge near quantile q of ``values``, in the widest gap between neighbouring samples
    there, so a pixel of mouse rounding cannot move a sample across it."""
    s = np.sort(values)
    i = int(q * len(s))
    lo, hi = max(0, i - 6), min(len(s) - 1, i + 6)
    j = lo + int(np.argmax(np.diff(s[lo : hi + 1])))
    return float((s[j] + s[j + 1]) / 2)


@pytest.fixture(scope="module")
def analysis_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A small analysis written to disk (results.h5), its explorer file and the patches."""
    folder = tmp_path_factory.mktemp("explorer")
    result = analyze("example:lattice-small", out=folder / "run", epochs=2, progress=False)
    data = from_analysis(result, pixel_size=PIXEL_NM, units="nm")
    html = write_explorer(folder / "explorer.html", data)
    assert data.patches is not None
    return folder / "run" / "results.h5", html, data.patches


def _thumbnail(png: bytes, side: int) -> np.ndarray:
    """The ``side`` x ``side`` tile drawn in a tooltip thumbnail (a screenshot of the element:
    a 1 px border around ``side`` blocks of THUMBNAIL_ZOOM screen pixels)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    zoom = THUMBNAIL_ZOOM
    centres = 1 + zoom // 2 + zoom * np.arange(side)
    return rgb[np.ix_(centres, centres)]


def test_box_selection_and_tooltip_match_the_results_file(
        browser: Any, analysis_run: tuple[Path, Path, np.ndarray]) -> None:
    results, html, patches = analysis_run
    with h5py.File(results, "r") as f:
        names = json.loads(f.attrs["latent_names"])
        mean, std = f["latents_mean"][()], f["latents_std"][()]
        labels, centers = f["labels"][()], f["centers"][()]
    z1, z2 = mean[:, names.index("z1")], mean[:, names.index("z2")]
    x0, x1 = _edge_in_gap(z1, 0.2), _edge_in_gap(z1, 0.75)
    y0, y1 = _edge_in_gap(z2, 0.25), _edge_in_gap(z2, 0.8)
    inside = (z1 > x0) & (z1 < x1) & (z2 > y0) & (z2 < y1)
    assert 3 <= inside.sum() < len(z1) - 3  # a real selection, not none or all

    page = Page(browser, html)
    page.drag("scatter_figure", x0, y0, x1, y1)
    page.page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('points').selected.indices.length > 0")
    selected = page.page.evaluate(
        "() => Array.from(Bokeh.documents[0].get_model_by_name('points').selected.indices)")
    assert sorted(selected) == np.flatnonzero(inside).tolist()
    # the image view highlights the same samples, and says how many
    assert page.page.evaluate(IMAGE_HIGHLIGHTED) == np.flatnonzero(inside).tolist()
    count_text = page.page.locator(".la-count").inner_text()
    assert count_text == f"{int(inside.sum())} selected, {int(inside.sum())} on frame 0"
    means = page.page.locator(".la-means").inner_text()
    shown_z1 = float(re.search(r"z1\s+(\S+)", means).group(1))  # type: ignore[union-attr]
    assert shown_z1 == pytest.approx(z1[inside].mean(), rel=1e-3, abs=1e-6)

    # hover the atom nearest the image centre: the tooltip shows its values from the file
    h = w = 128
    i = int(np.argmin(((centers - [h / 2, w / 2]) ** 2).sum(1)))
    page.page.mouse.move(*page.to_page("image_figure", centers[i, 1] * PIXEL_NM,
                                       centers[i, 0] * PIXEL_NM))
    tip = page.page.locator(".la-tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    where = re.search(r"#(\d+), frame (\d+), x = (\S+) nm, y = (\S+) nm", text)
    assert where is not None, text
    assert int(where.group(1)) == i and int(where.group(2)) == 0
    assert float(where.group(3)) == pytest.approx(centers[i, 1] * PIXEL_NM, abs=1e-3)
    assert float(where.group(4)) == pytest.approx(centers[i, 0] * PIXEL_NM, abs=1e-3)
    for j, name in enumerate(names):
        row = re.search(rf"^{name}\s+(\S+) ± (\S+)$", text, re.M)
        assert row is not None, (name, text)
        assert float(row.group(1)) == pytest.approx(mean[i, j], abs=1e-4)
        assert float(row.group(2)) == pytest.approx(std[i, j], abs=1e-4)
    assert re.search(rf"^class\s+{labels[i]}$", text, re.M), text
    assert page.page.locator(".la-thumb").count() == 2  # patch and reconstruction
    # the patch thumbnail shows this atom's patch (its tile of the sprite sheet, which the
    # browser decodes after the first hover)
    for _ in range(50):
        shown = _thumbnail(page.page.locator(".la-thumb").first.screenshot(), patches.shape[-1])
        if shown.std() > 1:
            break
        page.page.wait_for_timeout(100)
    r = np.corrcoef(shown.ravel(), patches[i].ravel())[0, 1]
    others = [np.corrcoef(shown.ravel(), patches[k].ravel())[0, 1] for k in (i - 1, i + 1)]
    assert r > 0.9 and max(others) < r - 0.2, (r, others)
    page.screenshot("explorer_analyze.png")
    assert page.errors == []


def test_spectral_click_shows_spectrum_reconstruction_and_contributions(
        browser: Any, tmp_path: Path) -> None:
    gen = make_spectral_cube("eels", shape=(12, 16), n_channels=48, n_components=3,
                             noise="poisson", counts=500, seed=3)
    result = unmix(gen.cube, "pca", 3, axis=gen.energy)
    data = from_unmix(result, gen.cube, axis=gen.energy)
    html = write_explorer(tmp_path / "spectral.html", data)
    page = Page(browser, html)
    row, col = 7, 4
    page.page.mouse.click(*page.to_page("map_figure", col * data.pixel_size,
                                        row * data.pixel_size))
    page.page.wait_for_function("() => Number.isFinite(Bokeh.documents[0]"
                                ".get_model_by_name('spectrum').data.spectrum[0])")
    shown = page.page.evaluate("() => { const d = Bokeh.documents[0].get_model_by_name("
                               "'spectrum').data; const o = {}; for (const k in d) "
                               "o[k] = Array.from(d[k]); return o }")
    np.testing.assert_allclose(shown["spectrum"], gen.cube[row, col], rtol=1e-6)
    rec = data.reconstruction(row, col)
    assert rec is not None
    np.testing.assert_allclose(shown["reconstruction"], rec, rtol=1e-4, atol=1e-3)
    assert data.loadings is not None and data.components is not None
    for q in range(3):
        np.testing.assert_allclose(shown[f"contribution_{q}"],
                                   data.loadings[row, col, q] * data.components[q],
                                   rtol=1e-4, atol=1e-3)
    # the map selector shows another loading map, with its own colour range
    page.page.locator("select").select_option("PC2")
    shown_map = page.page.evaluate("() => { const d = Bokeh.documents[0]; return [Array.from("
                                   "d.get_model_by_name('map_image').view.filter.indices), "
                                   "d.get_model_by_name('color_mapper').low, "
                                   "d.get_model_by_name('color_mapper').high] }")
    assert shown_map[0] == [list(data.maps).index("PC2")]
    assert shown_map[1:] == pytest.approx([data.maps["PC2"].min(), data.maps["PC2"].max()],
                                          rel=1e-5)
    page.screenshot("explorer_unmix.png")
    assert page.errors == []


def test_stack_frames_show_their_share_of_a_selection(browser: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    frame = rng.integers(0, 3, n)
    z = rng.normal(size=(n, 2))
    data = ExplorerData(frames=rng.normal(size=(3, 64, 80)), positions=rng.uniform(4, 60, (n, 2)),
                        frame_index=frame, values={"z1": z[:, 0], "z2": z[:, 1]}, window=8)
    page = Page(browser, write_explorer(tmp_path / "stack.html", data))
    x0, x1 = _edge_in_gap(z[:, 0], 0.3), _edge_in_gap(z[:, 0], 0.9)
    y0, y1 = _edge_in_gap(z[:, 1], 0.1), _edge_in_gap(z[:, 1], 0.6)
    inside = (z[:, 0] > x0) & (z[:, 0] < x1) & (z[:, 1] > y0) & (z[:, 1] < y1)
    page.drag("scatter_figure", x0, y0, x1, y1)
    page.page.wait_for_function(
        "() => Bokeh.documents[0].get_model_by_name('points').selected.indices.length > 0")
    for f in (0, 2):
        page.page.evaluate(f"() => {{ Bokeh.documents[0].get_model_by_name('frame_slider')"
                           f".value = {f} }}")
        expected = np.flatnonzero(inside & (frame == f)).tolist()
        assert page.page.evaluate(IMAGE_HIGHLIGHTED) == expected
        assert page.page.locator(".la-count").inner_text() == \
            f"{int(inside.sum())} selected, {len(expected)} on frame {f}"
    assert page.errors == []


def test_tooltip_shows_the_point_nearest_the_pointer_where_many_overlap(
        browser: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    z = rng.normal(scale=0.05, size=(n, 2))  # a dense cluster: dozens of markers under the pointer
    z[0] = [3.0, 3.0]  # stretches the axes so the cluster is a few screen pixels wide
    data = ExplorerData(frames=np.zeros((32, 32)), positions=rng.uniform(2, 30, (n, 2)),
                        values={"z1": z[:, 0], "z2": z[:, 1]})
    page = Page(browser, write_explorer(tmp_path / "dense.html", data))
    for k in (5, 77, 1234):
        page.page.mouse.move(*page.to_page("scatter_figure", z[k, 0], z[k, 1]))
        where = page.page.locator(".la-where")
        where.first.wait_for(state="visible")
        text = where.first.inner_text()
        shown = int(re.search(r"#(\d+)", text).group(1))  # type: ignore[union-attr]
        # the one tooltip is for the point under the pointer (or one drawn at the same pixel)
        d = np.hypot(*(np.array(page.to_page("scatter_figure", *z[shown]))
                       - np.array(page.to_page("scatter_figure", *z[k]))))
        assert d < 0.5, (k, shown, d)
        assert where.count() == 1
    assert page.errors == []

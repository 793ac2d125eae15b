"""analyze_stream: the movie analysed chunk by chunk from a Zarr store gives the in-memory
analyze's atoms, patches, latents and classes, and writes them as it goes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from latentatlas.analysis.labels import label_image  # noqa: E402
from latentatlas.datasets.lattices import lattice_stack  # noqa: E402
from latentatlas.io import save_zarr  # noqa: E402
from latentatlas.pipelines.analyze import analyze  # noqa: E402
from latentatlas.pipelines.stream import analyze_stream, parse_bytes  # noqa: E402


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    stack, _ = lattice_stack(5, shape=(112, 112), seed=4, kind="perovskite", spacing=12.0,
                             second_intensity=0.45, gaussian_noise=0.05)
    path = tmp_path_factory.mktemp("movie") / "movie.zarr"
    save_zarr(stack.astype(np.float32), path, chunks=(1, -1, -1))
    return stack.astype(np.float32), path


OPTIONS = dict(model="vae", epochs=3, latent_dim=2, n_components=2, progress=False)


@pytest.mark.parametrize("train_samples", [5000, 150])
def test_stream_equals_in_memory(movie: tuple[np.ndarray, Path], tmp_path: Path,
                                 train_samples: int) -> None:
    stack, path = movie
    ref = analyze(stack, "peaks", train_samples=train_samples, **OPTIONS)  # type: ignore[arg-type]
    res = analyze_stream(path, tmp_path / "out", "peaks", frames_per_chunk=2, workers=2,
                         train_samples=train_samples, **OPTIONS)  # type: ignore[arg-type]
    z = res.open()
    assert res.n_frames == 5 and res.n_patches == len(ref.patches) > 200
    np.testing.assert_array_equal(z["patches/frames"][:], ref.patches.frames)
    np.testing.assert_allclose(z["patches/centers"][:], ref.patches.centers, atol=1e-9)
    np.testing.assert_array_equal(z["patches/data"][:], ref.patches.data)
    np.testing.assert_allclose(z["latents/mean"][:], ref.maps.values, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(z["labels/labels"][:], ref.labels.labels)
    # classes painted on every frame, as label_image paints them
    for k in (0, 4):
        sel = ref.patches.frames == k
        painted = label_image(ref.labels.labels[sel], ref.patches.centers[sel], (112, 112))
        expected = np.where(np.isnan(painted), 255, painted).astype(np.uint8)
        np.testing.assert_array_equal(z["label_maps"][k], expected)
    assert res.latent_names == ref.maps.names
    config = json.loads((res.out / "config.json").read_text())
    assert config["frames_per_chunk"] == 2 and config["timings"]["per_frame"] > 0
    assert 0 < config["peak_rss_bytes"]
    for name in ("index.html", "image.png", "latent_maps.png", "labels.png", "model"):
        assert (res.out / name).exists()


def test_training_on_all_patches_streams_them(movie: tuple[np.ndarray, Path],
                                              tmp_path: Path) -> None:
    _, path = movie
    res = analyze_stream(path, tmp_path / "out", "peaks", train_samples=None,
                         **OPTIONS)  # type: ignore[arg-type]
    hist = res.model.history
    assert len(hist["train/total"]) == 3 and "test/elbo" in hist  # held-out blocks
    assert hist["train/total"][-1] < hist["train/total"][0]
    assert res.open()["latents/mean"].shape == (res.n_patches, 2)


@pytest.mark.parametrize("normalize", ["image", "patch"])
def test_tiled_frames_give_the_whole_frame_atoms_and_patches(tmp_path: Path,
                                                            normalize: str) -> None:
    """A frame cut into tiles (as when it does not fit the budget): the same atoms and the
    same patches, stored tile by tile."""
    stack, _ = lattice_stack(2, shape=(200, 260), seed=5, kind="perovskite", spacing=12.0,
                             second_intensity=0.45, gaussian_noise=0.05)
    opts = dict(OPTIONS, normalize=normalize)
    whole = analyze_stream(stack, tmp_path / "whole", "peaks", **opts).open()  # type: ignore[arg-type]
    tiled = analyze_stream(stack, tmp_path / "tiled", "peaks", tile=64,
                           **opts)  # type: ignore[arg-type]
    assert tiled.n_frames == 2
    t = tiled.open()
    # tile offsets added after refinement: equal to the last bit or two
    np.testing.assert_allclose(t["atoms/positions"][:], whole["atoms/positions"][:], atol=1e-9)
    np.testing.assert_array_equal(t["atoms/frames"][:], whole["atoms/frames"][:])
    order = np.argsort(t["patches/index"][:])
    np.testing.assert_array_equal(t["patches/index"][:][order], whole["patches/index"][:])
    np.testing.assert_array_equal(t["patches/data"][:][order], whole["patches/data"][:])
    np.testing.assert_allclose(t["patches/centers"][:][order], whole["patches/centers"][:],
                               atol=1e-9)
    config = json.loads((tiled.out / "config.json").read_text())
    assert config["tile"] == 64 and config["normalize"] == normalize


def test_tiles_take_image_normalisation_for_auto(tmp_path: Path) -> None:
    stack, _ = lattice_stack(1, shape=(160, 160), seed=5, kind="square", spacing=12.0)
    res = analyze_stream(stack, tmp_path / "t", "peaks", tile=64, **OPTIONS)  # type: ignore[arg-type]
    assert json.loads((res.out / "config.json").read_text())["normalize"] == "image"
    with pytest.raises(ValueError, match="whole frames"):
        analyze_stream(stack, tmp_path / "u", "peaks", tile=64, normalize="background",
                       **OPTIONS)  # type: ignore[arg-type]


def test_tiled_painting_equals_whole_frame_painting(tmp_path: Path) -> None:
    from latentatlas.pipelines.stream import _paint

    stack, _ = lattice_stack(3, shape=(150, 170), seed=6, kind="square", spacing=10.0)
    from latentatlas.descriptors.atoms import find_atoms

    atoms = find_atoms(stack, "peaks")
    labels = np.random.default_rng(0).integers(0, 3, len(atoms))
    maps = [zarr.create_array(str(tmp_path / f"{t}.zarr"), shape=(3, 150, 170),
                              chunks=(1, t or 150, t or 170), dtype="uint8", fill_value=255)
            for t in (None, 40)]
    for t, z in zip((None, 40), maps, strict=True):
        _paint(atoms.frame, atoms.positions, labels, z, 2, t)
    assert (maps[0][:] != 255).mean() > 0.3
    np.testing.assert_array_equal(maps[1][:], maps[0][:])


def test_budget_and_inputs_checked(movie: tuple[np.ndarray, Path], tmp_path: Path) -> None:
    _, path = movie
    assert parse_bytes("4 GB") == 4 * 10**9 and parse_bytes("512MiB") == 512 * 2**20
    with pytest.raises(ValueError, match="memory_budget"):
        analyze_stream(path, tmp_path / "a", memory_budget="100 MB", **OPTIONS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sliding windows"):
        analyze_stream(path, tmp_path / "b", "none", **OPTIONS)  # type: ignore[arg-type]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_cli_memory_budget_streams(movie: tuple[np.ndarray, Path], tmp_path: Path) -> None:
    """`latentatlas analyze MOVIE.zarr --memory-budget 2GB` is analyze_stream with the
    command's options; what it cannot stream is refused with the reason."""
    from typer.testing import CliRunner

    from latentatlas.cli import app

    _, path = movie
    args = ["analyze", str(path), "-m", "vae", "-e", "2", "--latent-dim", "3", "-k", "2",
            "--train-samples", "300", "-q"]
    res = CliRunner().invoke(app, [*args, "--memory-budget", "2GB", "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "(budget 2.00 GB)" in res.output and "s per frame" in res.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["memory_budget_bytes"] == 2 * 10**9 and config["frames"] == 5
    analysis = config["analysis"]
    assert (analysis["model"], analysis["epochs"], analysis["latent_dim"],
            analysis["n_components"], analysis["train_samples"]) == ("vae", 2, 3, 2, 300)
    z = zarr.open_group(str(tmp_path / "a" / "results.zarr"), mode="r")
    assert z["latents/mean"].shape[1] >= 3 and set(np.unique(z["labels/labels"][:])) == {0, 1}
    for extra, why in ((["--memory-budget", "2GB", str(path)], "streams one file"),
                       (["--memory-budget", "2GB", "-F", "svg"], "--figure-format"),
                       (["--memory-budget", "lots"], "memory_budget must be bytes"),
                       (["--memory-budget", "2GB", "--atoms", "none"], "sliding windows")):
        res = CliRunner().invoke(app, [*args, *extra, "-o", str(tmp_path / "b")])
        assert res.exit_code == 2 and why in res.output, (extra, res.output)
    assert not (tmp_path / "b").exists()

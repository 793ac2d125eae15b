"""The user-facing API, the registry, the CLI, and clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import latentatlas.cli  # noqa: F401  (registers the commands)
from latentatlas.cli.app import app
from latentatlas.datasets.shapes import rotated_shapes
from latentatlas.models import get_model, list_models
from latentatlas.pipelines.train import train_run


@pytest.fixture(scope="module")
def model_and_data():
    data = rotated_shapes(200, size=12, seed=0)
    model = get_model("rvae", (12, 12), hidden=32, decoder="transform", latent_dim=2)
    model.fit(data.images, epochs=1, batch_size=50, progress=False)
    return model, data.images


def test_registry_lists_the_core_family() -> None:
    names = list_models()
    assert {"vae", "shiftvae", "rvae"} <= set(names)
    with pytest.raises(ValueError, match="available: .*rvae"):
        get_model("nope", (12, 12))


def test_encode_decode_manifold_shapes(model_and_data) -> None:
    model, x = model_and_data
    lat = model.encode(x)
    assert lat.names == ["angle", "shift_x", "shift_y", "z1", "z2"]
    assert lat.mean.shape == lat.std.shape == (len(x), 5) and (lat.std > 0).all()
    assert model.decode(np.zeros((3, 2)), angle=np.zeros(3), shift=np.zeros((3, 2))).shape == (3, 1, 12, 12)
    assert model.manifold(n=4).shape == (4, 4, 1, 12, 12)
    assert model.reconstruct(x[:5]).shape == (5, 1, 12, 12)


def test_decoding_with_an_angle_rotates_the_output(model_and_data) -> None:
    model, _ = model_and_data
    z = np.zeros((1, 2))
    upright = model.decode(z)[0, 0]
    turned = model.decode(z, angle=np.array([np.pi / 2]))[0, 0]
    # 90 degrees counter-clockwise as displayed is np.rot90 (up to interpolation at the border)
    assert np.abs(turned - np.rot90(upright)).mean() < np.abs(turned - upright).mean()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full((4, 12, 12), np.nan, dtype=np.float32), "NaN"),
        (np.full((4, 12, 12), np.inf, dtype=np.float32), "infinite"),
        (np.zeros((4, 12), dtype=np.float32), "dimensions"),
        (np.zeros((0, 12, 12), dtype=np.float32), "empty"),
        (np.zeros((4, 16, 16), dtype=np.float32), r"built for \(1, 12, 12\)"),
        (np.array([["a"] * 12] * 12), "numeric"),
    ],
)
def test_bad_input_gets_a_clear_error(model_and_data, bad: np.ndarray, message: str) -> None:
    model, _ = model_and_data
    with pytest.raises(ValueError, match=message):
        model.encode(bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"latent_dim": 0}, r"latent_dim must be in \[1, 4096\], got 0"),
     ({"decoder": "mlp"}, "('spatial', 'transform')"),
     ({"angle_prior": -1.0}, "angle_prior must be > 0"), ({"encoder": "vit"}, "encoder must be one of")],
)
def test_config_errors_name_the_parameter(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_model("rvae", (12, 12), **options)


def test_failed_run_leaves_no_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((10, 12, 12), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        train_run(bad, tmp_path / "run", epochs=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]


def test_cli_models_train_encode(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "rvae" in listed.output
    x = rotated_shapes(120, size=12, seed=0).images[:, 0]
    np.save(tmp_path / "patches.npy", x)
    out = tmp_path / "run"
    trained = runner.invoke(app, ["train", str(tmp_path / "patches.npy"), "--out", str(out),
                                  "--epochs", "1", "--decoder", "transform", "--quiet"])
    assert trained.exit_code == 0, trained.output
    for name in ("model/config.json", "model/model.safetensors", "latents.npz", "history.png",
                 "latents.png", "manifold.png"):
        assert (out / name).exists(), name
    encoded = runner.invoke(app, ["encode", str(out), str(tmp_path / "patches.npy"), "--out",
                                  str(tmp_path / "lat.npz")])
    assert encoded.exit_code == 0, encoded.output
    assert np.load(tmp_path / "lat.npz")["mean"].shape == (120, 5)


def test_cli_reports_a_non_numeric_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.npy"
    text.write_text("these are not numbers")
    result = CliRunner().invoke(app, ["train", str(text), "--out", str(tmp_path / "run"), "--epochs", "1"])
    assert result.exit_code == 2
    assert "notes.npy" in result.output
    assert not (tmp_path / "run").exists()


def test_cli_trains_a_semi_supervised_model_from_a_labels_file(tmp_path: Path) -> None:
    x = rotated_shapes(120, size=12, seed=0).images[:, 0]
    y = np.full(120, -1)
    y[:20] = np.arange(20) % 2
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    runner = CliRunner()
    ok = runner.invoke(app, ["train", str(tmp_path / "x.npy"), "--model", "ssvae", "--labels",
                             str(tmp_path / "y.npy"), "--epochs", "1", "--out", str(tmp_path / "run"),
                             "--quiet"])
    assert ok.exit_code == 0, ok.output
    assert '"n_classes": 2' in (tmp_path / "run" / "model" / "config.json").read_text()
    refused = runner.invoke(app, ["train", str(tmp_path / "x.npy"), "--model", "vae", "--labels",
                                  str(tmp_path / "y.npy"), "--epochs", "1", "--out",
                                  str(tmp_path / "run2")])
    assert refused.exit_code == 2 and "does not learn from labels" in refused.output


def test_active_latents_are_those_whose_means_vary_over_samples() -> None:
    from latentatlas.models import Latents

    rng = np.random.default_rng(0)
    # a used latent, one collapsed to the prior (means ~0 whatever the input), a used one off 0
    mean = np.c_[rng.normal(size=500), 0.01 * rng.normal(size=500), rng.normal(0.5, 0.2, 500)]
    # posterior std 0.3: z3's means spread by 0.2 / 0.3 = 0.67 posterior widths, z2's by 0.03
    latents = Latents(["z1", "z2", "z3"], mean, np.full_like(mean, 0.3))
    assert latents.active().tolist() == [True, False, True]
    assert latents.active(threshold=1.0).tolist() == [True, False, False]

"""The microscopist's workflow around the science: version, the same short flags everywhere,
hints in command-line syntax, short reprs, lazy subpackages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from latentatlas import __version__


def _app():  # type: ignore[no-untyped-def]
    from latentatlas.cli import app

    return app


def test_version_flag() -> None:
    for flag in ("--version", "-V"):
        res = CliRunner().invoke(_app(), [flag])
        assert res.exit_code == 0 and res.output.strip() == f"latentatlas {__version__}"


def test_the_same_short_flags_in_every_command() -> None:
    from latentatlas.cli.app import app

    shared = {"-o": "--out", "-q": "--quiet", "-f": "--overwrite", "-F": "--figure-format"}
    for command in ("analyze", "unmix", "walls", "graphene"):
        res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0
        for short, long in shared.items():
            assert f"{long}" in res.output and f" {short} " in res.output, (command, short)
    for command in ("analyze", "unmix", "walls"):
        res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert "--channel" in res.output and " -c " in res.output, command


def test_errors_give_hints_in_cli_syntax(tmp_path: Path) -> None:
    from latentatlas.cli.app import cli_syntax

    assert cli_syntax("pass offset='min' or use 'pca'") == "pass --offset min or use 'pca'"
    assert cli_syntax("pass channel= to pick another") == "pass --channel to pick another"
    assert cli_syntax("unless overwrite=True") == "unless --overwrite"
    assert cli_syntax("the file data_channel=3.h5") == "the file data_channel=3.h5"
    cube = np.random.default_rng(0).normal(size=(4, 5, 8)).astype(np.float32)
    np.save(tmp_path / "neg.npy", cube)
    res = CliRunner().invoke(_app(), ["unmix", str(tmp_path / "neg.npy"), "-m", "nmf", "-q",
                                      "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert "--offset min" in res.output and "offset=" not in res.output


def test_short_reprs() -> None:
    import latentatlas as la
    from latentatlas.datasets.spectral import make_spectral_cube

    s = make_spectral_cube("eels", shape=(30, 30), n_channels=200, seed=0)
    res = la.unmix(s.cube, "nmf", 3)
    assert len(repr(res)) < 400  # printed 16-18k characters of arrays
    assert repr(res).startswith("UnmixResult(method=nmf, n_components=3")
    assert "<table" in res._repr_html_() and len(res._repr_html_()) < 3000
    model = la.get_model("rvae", input_shape=(16, 16))
    assert "object at 0x" not in repr(model) and "latents=[angle" in repr(model)
    assert "<table" in model._repr_html_()


def test_subpackages_load_on_first_use() -> None:
    code = ("import latentatlas as la; print(la.io.load.__name__, la.plots.__name__, "
            "la.spectral.unmix.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["load", "latentatlas.plots", "unmix"]


# ------------------------------------------------------------------------------ batch runs


def _lattices(folder: Path, n: int) -> list[Path]:
    from latentatlas.datasets.lattices import two_site_lattice

    folder.mkdir()
    paths = []
    for i in range(n):
        img = two_site_lattice(shape=(96, 96), seed=i).image
        np.save(folder / f"scan{i}.npy", img)
        paths.append(folder / f"scan{i}.npy")
    return paths


def test_batch_from_config_reusing_one_model(tmp_path: Path) -> None:
    """analyze over a glob with one trained model: no training per file, every file encoded
    in the same latent space, a summary across files; a bad file is reported, not fatal."""
    import json

    from latentatlas.pipelines.analyze import analyze
    from latentatlas.pipelines.batch import run_config

    _lattices(tmp_path / "scans", 2)
    np.save(tmp_path / "scans" / "scan9.npy", np.zeros(5))  # not an image
    first = analyze(tmp_path / "scans" / "scan0.npy", epochs=1, train_samples=64,
                    progress=False, out=tmp_path / "first")
    (tmp_path / "batch.toml").write_text(
        'command = "analyze"\ninputs = ["scans/*.npy"]\nout = "results/all"\n'
        'model_from = "first"\n[options]\nepochs = 3\nn_components = 2\n')
    res = CliRunner().invoke(_app(), ["run", str(tmp_path / "batch.toml"), "-q"])
    assert res.exit_code == 1, res.output  # one file failed
    out = tmp_path / "results" / "all"
    lines = (out / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("input,folder,status") and len(lines) == 4
    assert [ln.split(",")[2] for ln in lines[1:3]] == ["ok", "ok"]
    assert "failed" in lines[3] and "scan9" in lines[3]
    for name in ("scan0", "scan1"):
        marker = json.loads((out / name / "latentatlas-run.json").read_text())
        assert marker["config"]["model_from"] == str((tmp_path / "first").resolve())
        assert (out / name / "index.html").exists()
    # the reused model encodes like the original: same latents for the same file
    import h5py

    with h5py.File(first.out / "results.h5") as a, h5py.File(out / "scan0" / "results.h5") as b:
        np.testing.assert_allclose(a["latents_mean"][()], b["latents_mean"][()], atol=1e-5)
        assert "train" not in json.loads(b.attrs["config"])["timings"]
    assert "scan1" in (out / "index.html").read_text()
    again = run_config(tmp_path / "batch.toml")  # its own folder is replaced
    assert len(again.rows) == 3 and len(again.failed) == 1


def test_every_results_folder_reruns_from_its_record(tmp_path: Path) -> None:
    from latentatlas.pipelines.batch import rerun
    from latentatlas.pipelines.unmix import run_unmix
    from latentatlas.spectral import UnmixResult

    cube = np.random.default_rng(0).random((6, 7, 12)).astype(np.float32)
    np.save(tmp_path / "cube.npy", cube)
    run_unmix(tmp_path / "cube.npy", "nmf", 2, tmp_path / "u", crop=(2.0, 9.0), max_iter=30)
    again = rerun(tmp_path / "u", tmp_path / "u2")
    a = UnmixResult.load(tmp_path / "u" / "nmf.h5")
    b = UnmixResult.load(tmp_path / "u2" / "nmf.h5")
    assert b.params["options"] == {"max_iter": 30} and b.energy.shape == a.energy.shape
    assert a.components is not None and b.components is not None
    np.testing.assert_allclose(a.components, b.components, rtol=1e-5)  # float32 NMF
    assert again.out == tmp_path / "u2"
    res = CliRunner().invoke(_app(), ["rerun", str(tmp_path / "u"), "-q"])  # in place
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(_app(), ["rerun", str(tmp_path), "-q"])
    assert res.exit_code == 2 and "not a latentatlas results folder" in res.output

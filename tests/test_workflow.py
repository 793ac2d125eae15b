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

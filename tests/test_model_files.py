"""A saved model folder is not trusted (issue 15): tampered config.json, weights and history
give a LoadError naming the folder, never a raw TypeError/KeyError, a hang or an exhausted
memory; sizes are bounded and checked against the weights before anything is built; weights
that are not finite are refused."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from latentatlas.io import LoadError
from latentatlas.models import get_model, load_model
from latentatlas.models.config import VAEConfig

FAMILIES: dict[str, dict[str, Any]] = {
    "vae": {},
    "rvae": {},
    "cvae": {"n_classes": 3},
    "jvae": {"discrete": (3,)},
    "ssvae": {"n_classes": 3},
    "ensemble": {"member": "jvae", "n_members": 2, "discrete": (3,)},
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("saved")
    out = {}
    for name, options in FAMILIES.items():
        model = get_model(name, (8, 8), hidden=8, **options)
        model.history = {"loss": [3.0, 2.0]}
        out[name] = model.save(root / name)
    return out


Tamper = Callable[[Path], None]


def _meta(edit: Callable[[dict[str, Any]], Any]) -> Tamper:
    def apply(folder: Path) -> None:
        meta = json.loads((folder / "config.json").read_text())
        result = edit(meta)
        (folder / "config.json").write_text(json.dumps(meta if result is None else result))
    return apply


def _field(name: str, value: Any) -> Tamper:
    def edit(meta: dict[str, Any]) -> None:
        meta["config"][name] = value
    return _meta(edit)


def _weights(edit: Callable[[dict[str, torch.Tensor]], None]) -> Tamper:
    def apply(folder: Path) -> None:
        state = load_file(str(folder / "model.safetensors"))
        edit(state)
        save_file(state, str(folder / "model.safetensors"))
    return apply


def _bytes(edit: Callable[[bytes], bytes], file: str) -> Tamper:
    def apply(folder: Path) -> None:
        (folder / file).write_bytes(edit((folder / file).read_bytes()))
    return apply


def _first_float(state: dict[str, torch.Tensor]) -> str:
    return next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)


def _set(meta: dict[str, Any], key: str, value: Any) -> None:
    meta[key] = value


def _nan_everywhere(state: dict[str, torch.Tensor]) -> None:
    for v in state.values():
        if v.is_floating_point():
            v.fill_(float("nan"))


def _one_inf(state: dict[str, torch.Tensor]) -> None:
    state[_first_float(state)].view(-1)[0] = float("inf")


def _drop_one(state: dict[str, torch.Tensor]) -> None:
    del state[_first_float(state)]


def _add_one(state: dict[str, torch.Tensor]) -> None:
    state["extra"] = torch.zeros(3)


def _reshape_one(state: dict[str, torch.Tensor]) -> None:
    key = _first_float(state)
    state[key] = state[key].reshape(-1)[:-1].clone()


def _as_int(state: dict[str, torch.Tensor]) -> None:
    key = _first_float(state)
    state[key] = state[key].to(torch.int32)


# Tamperings that apply to every family; the config fields below exist in every config.
TAMPERINGS: dict[str, Tamper] = {
    "config.json not JSON": _bytes(lambda b: b[:-20], "config.json"),
    "config.json empty": _bytes(lambda b: b"", "config.json"),
    "config.json binary": _bytes(lambda b: b"\xff\xfe\x00garbage", "config.json"),
    "config.json 2 MB": _bytes(lambda b: b + b" " * (2 << 20), "config.json"),
    "meta is a list": _meta(lambda m: [m]),
    "meta is a number": _meta(lambda m: 3),
    "meta is null": _bytes(lambda b: b"null", "config.json"),
    "model missing": _meta(lambda m: m.pop("model") and None),
    "model unknown": _meta(lambda m: _set(m, "model", "transformer")),
    "model a number": _meta(lambda m: _set(m, "model", 5)),
    "model a list": _meta(lambda m: _set(m, "model", ["vae"])),
    "config missing": _meta(lambda m: m.pop("config") and None),
    "config a list": _meta(lambda m: _set(m, "config", [1, 2])),
    "config a string": _meta(lambda m: _set(m, "config", "latent_dim=2")),
    "seed a string": _meta(lambda m: _set(m, "seed", "zero")),
    "seed negative": _meta(lambda m: _set(m, "seed", -1)),
    "seed huge": _meta(lambda m: _set(m, "seed", 2**80)),
    "seed a bool": _meta(lambda m: _set(m, "seed", True)),
    "seed a float": _meta(lambda m: _set(m, "seed", 1.5)),
    "input_shape missing": _meta(lambda m: m["config"].pop("input_shape") and None),
    "unknown field": _field("colour", "blue"),
    "input_shape empty": _field("input_shape", []),
    "input_shape a string": _field("input_shape", "8x8"),
    "input_shape zero": _field("input_shape", [1, 0, 8]),
    "input_shape floats": _field("input_shape", [1, 8.5, 8]),
    "input_shape huge": _field("input_shape", [1, 10**9, 10**9]),
    "input_shape nested": _field("input_shape", [[1], 8, 8]),
    "input_shape 100 dims": _field("input_shape", [1] * 100),
    "input_shape other size": _field("input_shape", [1, 9, 9]),
    "latent_dim a string": _field("latent_dim", "2"),
    "latent_dim null": _field("latent_dim", None),
    "latent_dim a float": _field("latent_dim", 2.5),
    "latent_dim a bool": _field("latent_dim", True),
    "latent_dim zero": _field("latent_dim", 0),
    "latent_dim 10**9": _field("latent_dim", 10**9),
    "latent_dim other size": _field("latent_dim", 3),
    "hidden a dict": _field("hidden", {"a": 1}),
    "hidden negative": _field("hidden", -8),
    "hidden 10**9": _field("hidden", 10**9),
    "hidden other size": _field("hidden", 9),
    "layers 100000": _field("layers", 100_000),
    "layers a list": _field("layers", [2]),
    "layers other count": _field("layers", 3),
    "encoder unknown": _field("encoder", "transformer"),
    "encoder a number": _field("encoder", 1),
    "encoder conv": _field("encoder", "conv"),
    "likelihood null": _field("likelihood", None),
    "sigma NaN": _field("sigma", float("nan")),
    "sigma infinite": _field("sigma", float("inf")),
    "sigma a string": _field("sigma", "0.1"),
    "sigma negative": _field("sigma", -0.1),
    "beta negative": _field("beta", -1.0),
    "beta a list": _field("beta", [1.0]),
    "rotation a string": _field("rotation", "yes"),
    "rotation a number": _field("rotation", 1),
    "condition_dim 10**7": _field("condition_dim", 10**7),
    "learn_sigma true": _field("learn_sigma", True),
    "weights missing": lambda folder: (folder / "model.safetensors").unlink(),
    "weights empty": _bytes(lambda b: b"", "model.safetensors"),
    "weights truncated": _bytes(lambda b: b[:-7], "model.safetensors"),
    "weights header truncated": _bytes(lambda b: b[:40], "model.safetensors"),
    "weights extra bytes": _bytes(lambda b: b + b"\0" * 8, "model.safetensors"),
    "weights header length huge": _bytes(lambda b: struct.pack("<Q", 2**62) + b[8:],
                                         "model.safetensors"),
    "weights header not JSON": _bytes(lambda b: b[:8] + b"{" * (len(b) - 8),
                                      "model.safetensors"),
    "weights header a list": _bytes(
        lambda b: struct.pack("<Q", 2) + b"[]", "model.safetensors"),
    "weights offsets overlap": _bytes(
        lambda b: b.replace(b'"data_offsets":[0,', b'"data_offsets":[4,', 1),
        "model.safetensors"),
    "weights dtype unknown": _bytes(lambda b: b.replace(b'"F32"', b'"F99"', 1),
                                    "model.safetensors"),
    "weights shape lie": _bytes(lambda b: b.replace(b'"shape":[', b'"shape":[1000000,', 1),
                                "model.safetensors"),
    "tensor missing": _weights(_drop_one),
    "tensor extra": _weights(_add_one),
    "tensor reshaped": _weights(_reshape_one),
    "tensor as int32": _weights(_as_int),
    "weights all NaN": _weights(_nan_everywhere),
    "one weight infinite": _weights(_one_inf),
    "history not JSON": _bytes(lambda b: b"{", "history.json"),
    "history a list": _bytes(lambda b: b"[1, 2]", "history.json"),
    "history strings": _bytes(lambda b: b'{"loss": ["a"]}', "history.json"),
    "history nested": _bytes(lambda b: b'{"loss": [[1]]}', "history.json"),
}

ENSEMBLE_TAMPERINGS: dict[str, Tamper] = {
    "member missing": _meta(lambda m: m.pop("member") and None),
    "member unknown": _meta(lambda m: _set(m, "member", "gan")),
    "member ensemble": _meta(lambda m: _set(m, "member", "ensemble")),
    "member a number": _meta(lambda m: _set(m, "member", 3)),
    "n_members 10**7": _meta(lambda m: _set(m, "n_members", 10**7)),
    "n_members zero": _meta(lambda m: _set(m, "n_members", 0)),
    "n_members a string": _meta(lambda m: _set(m, "n_members", "2")),
    "n_members a bool": _meta(lambda m: _set(m, "n_members", True)),
    "n_members other count": _meta(lambda m: _set(m, "n_members", 3)),
    "discrete empty": _field("discrete", []),
    "discrete strings": _field("discrete", ["3"]),
    "discrete other count": _field("discrete", [4]),
    "discrete huge": _field("discrete", [10**9]),
}


FIELD_TAMPERINGS = {k for k in TAMPERINGS if k.split()[0] in VAEConfig.__dataclass_fields__}


def _cases() -> list[tuple[str, str]]:
    """Every tampering of the config's fields for every family; the family-independent ones
    (files, meta, weights, history) for a plain VAE and an ensemble."""
    cases = [(family, name) for family in FAMILIES for name in TAMPERINGS
             if name in FIELD_TAMPERINGS or family in ("vae", "ensemble")]
    return cases + [("ensemble", name) for name in ENSEMBLE_TAMPERINGS]


def test_there_are_many_tampered_folders() -> None:
    assert len(FIELD_TAMPERINGS) >= 30 and len(_cases()) >= 300


@pytest.mark.parametrize(("family", "tampering"), _cases())
def test_tampered_folder_gives_a_clear_error(saved: dict[str, Path], tmp_path: Path,
                                             family: str, tampering: str) -> None:
    folder = tmp_path / family
    shutil.copytree(saved[family], folder)
    (TAMPERINGS | ENSEMBLE_TAMPERINGS)[tampering](folder)
    try:
        load_model(folder)
    except LoadError as exc:
        assert str(folder) in str(exc)
    except FileNotFoundError as exc:
        assert tampering == "weights missing" and str(folder) in str(exc)
    else:
        # learn_sigma only decides whether training moves sigma (saved either way)
        assert tampering == "learn_sigma true", f"{tampering} loaded silently"


def test_untampered_folders_load(saved: dict[str, Path]) -> None:
    for family, folder in saved.items():
        model = load_model(folder)
        assert model.history == {"loss": [3.0, 2.0]}, family


def test_all_nan_weights_are_refused(tmp_path: Path) -> None:
    model = get_model("vae", (8, 8), hidden=8)
    with torch.no_grad():
        for p in model.module.parameters():
            p.fill_(float("nan"))
    folder = model.save(tmp_path / "nan")
    with pytest.raises(LoadError, match=r"nan.*NaN or infinite values"):
        load_model(folder)


def test_huge_sizes_fail_fast_under_a_memory_cap(saved: dict[str, Path], tmp_path: Path) -> None:
    """layers=100000, n_members=10**7, latent_dim=10**9 used to hang or exhaust memory; in a
    process capped at 2 GiB above its start-up size each must be a LoadError within seconds."""
    folders = []
    for family, key, where, value in (("vae", "layers", "config", 100_000),
                                      ("vae", "latent_dim", "config", 10**9),
                                      ("vae", "hidden", "config", 10**8),
                                      ("ensemble", "n_members", "meta", 10**7)):
        folder = tmp_path / f"{family}-{key}"
        shutil.copytree(saved[family], folder)
        meta = json.loads((folder / "config.json").read_text())
        (meta["config"] if where == "config" else meta)[key] = value
        (folder / "config.json").write_text(json.dumps(meta))
        folders.append(str(folder))
    code = (
        "import re, resource, sys\n"
        "from pathlib import Path\n"
        "from latentatlas.io import LoadError\n"
        "from latentatlas.models import load_model\n"
        "vm = int(re.search(r'VmSize:\\s+(\\d+)', Path('/proc/self/status').read_text())[1])\n"
        "limit = vm * 1024 + (2 << 30)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "for folder in sys.argv[1:]:\n"
        "    try:\n"
        "        load_model(folder)\n"
        "        print('loaded', folder)\n"
        "    except LoadError as exc:\n"
        "        print('LoadError', str(exc)[:200])\n"
    )
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to cap the address space")
    done = subprocess.run([sys.executable, "-c", code, *folders], capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(lines) == 4 and all(line.startswith("LoadError") for line in lines), lines
    assert "layers must be in [1, 64]" in lines[0]
    assert "n_members must be an integer in [1, 1024]" in lines[3]


@pytest.mark.parametrize(("options", "message"), [
    ({"layers": 100_000}, r"layers must be in \[1, 64\], got 100000"),
    ({"latent_dim": "3"}, r"latent_dim must be an integer, got '3'"),
    ({"latent_dim": 10**9}, r"latent_dim must be in \[1, 4096\]"),
    ({"hidden": 2.0}, r"hidden must be an integer, got 2.0"),
    ({"beta": float("nan")}, r"beta must be a finite number"),
    ({"rotation": "no"}, r"rotation must be true or false"),
    ({"encoder": "conv", "layers": 9}, r"layers must be <= 8 with encoder='conv'"),
])
def test_config_types_and_bounds(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VAEConfig(input_shape=(1, 8, 8), **options)


def test_numpy_numbers_are_accepted() -> None:
    import numpy as np

    c = VAEConfig(input_shape=np.array([1, 8, 8]), latent_dim=np.int64(3), beta=np.float32(0.5))
    assert c.latent_dim == 3 and type(c.latent_dim) is int and c.input_shape == (1, 8, 8)
    assert VAEConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c

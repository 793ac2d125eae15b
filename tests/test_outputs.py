"""Nothing lost: results folders, refusals, atomic swaps, kills at random moments, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import latentatlas._files as files
import latentatlas.cli  # noqa: F401  (registers every command)
from latentatlas.cli.app import app
from latentatlas.pipelines.outputs import (
    MARKER,
    OutputError,
    check_output,
    read_marker,
    results_folder,
)

CLI = [sys.executable, "-c", "from latentatlas.cli import main; main()"]


def _write_run(out: Path, files_: dict[str, str], overwrite: bool = False,
               inputs: tuple[str, ...] = ()) -> None:
    plan = check_output(out, inputs, overwrite)
    with results_folder(plan, "test", {"n": len(files_)}, inputs) as tmp:
        for name, text in files_.items():
            (tmp / name).write_text(text)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --- the rules --------------------------------------------------------------------------------


def test_a_results_folder_is_replaced_whole_and_lists_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _write_run(out, {"a.txt": "1", "b.txt": "1"})
    assert read_marker(out)["entries"] == ["a.txt", "b.txt"]
    _write_run(out, {"a.txt": "2"})
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "a.txt"])
    assert (out / "a.txt").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left


def test_foreign_folders_files_and_inputs_are_refused(tmp_path: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a latentatlas results folder.*notes.txt"):
        check_output(user)
    a_file = tmp_path / "img.npy"
    a_file.write_bytes(b"data")
    with pytest.raises(OutputError, match="existing file"):
        check_output(a_file)
    # a results folder the user put a file into is no longer ours alone
    run = tmp_path / "run"
    _write_run(run, {"a.txt": "1"})
    (run / "extra.txt").write_text("mine")
    with pytest.raises(OutputError, match="also holds other files.*extra.txt"):
        check_output(run)
    # a folder holding an input
    inp = user / "img.npy"
    inp.write_bytes(b"x")
    with pytest.raises(OutputError, match="holds the input"):
        check_output(user, [str(inp)])
    assert (user / "notes.txt").read_text() == "mine" and a_file.read_bytes() == b"data"


def test_overwrite_replaces_only_latentatlas_files(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "img.npy").write_text("input")
    _write_run(out, {"a.txt": "1", "stale.txt": "1"}, overwrite=True, inputs=(str(out / "img.npy"),))
    _write_run(out, {"a.txt": "2"}, overwrite=True, inputs=(str(out / "img.npy"),))
    assert (out / "notes.txt").read_text() == "mine" and (out / "img.npy").read_text() == "input"
    assert (out / "a.txt").read_text() == "2" and not (out / "stale.txt").exists()
    assert read_marker(out)["entries"] == ["a.txt"]
    # an input that a run would replace is refused even with overwrite
    (out / "a.txt").write_text("an input now")
    with pytest.raises(OutputError, match="would replace"):
        check_output(out, [str(out / "a.txt")], overwrite=True)


def test_a_failed_run_leaves_the_old_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _write_run(out, {"a.txt": "old"})
    before = _snapshot(out)
    with pytest.raises(RuntimeError), results_folder(check_output(out), "test", {}) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash")
    assert _snapshot(out) == before and [p.name for p in tmp_path.iterdir()] == ["run"]


def test_swap_without_atomic_exchange_is_repaired_after_a_crash(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    out = tmp_path / "run"
    _write_run(out, {"a.txt": "old"})
    _write_run(out, {"a.txt": "new"})
    assert (out / "a.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["run"]
    # a crash between the two renames leaves the old results only under .run.previous:
    # the next run puts them back before deciding anything
    out.rename(tmp_path / ".run.previous")
    plan = check_output(out)
    assert plan.mode == "replace" and (out / "a.txt").read_text() == "new"
    assert not (tmp_path / ".run.previous").exists()


def test_leftover_names_latentatlas_did_not_make_are_never_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted writers' leftovers are removed by the mark inside them, not by their name:
    a user's folders called like them survive every write."""
    out = tmp_path / "run"
    _write_run(out, {"a.txt": "old"})
    mine = {tmp_path / ".run.partial-backup": "keep", tmp_path / ".run.previous": "keep too"}
    for folder, text in mine.items():
        folder.mkdir()
        (folder / "notes.txt").write_text(text)
    # a real leftover of an interrupted run (the stage, marked) is cleaned up
    stale = files.new_partial(out)
    (stale / "half.txt").write_text("x")
    _write_run(out, {"a.txt": "new"})
    assert (out / "a.txt").read_text() == "new" and not stale.exists()
    # without an atomic exchange the old results would need the name .run.previous, which
    # is the user's: the write is refused and nothing changes
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    with pytest.raises(FileExistsError, match="not made by latentatlas"):
        _write_run(out, {"a.txt": "newer"})
    assert (out / "a.txt").read_text() == "new"
    for folder, text in mine.items():
        assert (folder / "notes.txt").read_text() == text
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".run.partial-backup", ".run.previous", "run"]


def test_atomic_exchange_is_used_where_the_kernel_has_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not files._exchange(a, b):
        pytest.skip("this file system has no atomic exchange (the fallback is tested above)")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_saving_a_model_never_deletes_other_files(tmp_path: Path) -> None:
    from latentatlas.models import get_model

    model = get_model("vae", (8, 8), hidden=8)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a saved model"):
        model.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    model.save(tmp_path / "m")
    model.save(tmp_path / "m")  # a saved model is replaced


# --- the command line -------------------------------------------------------------------------


def _lattice(path: Path) -> Path:
    from latentatlas.datasets.lattices import two_site_lattice

    np.save(path, two_site_lattice(shape=(96, 96)).image)
    return path


def test_cli_out_dot_with_user_files_is_refused_before_any_work(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.chdir(tmp_path)
    img = _lattice(tmp_path / "img.npy")
    (tmp_path / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    for argv in (["analyze", "img.npy", "--out", ".", "--epochs", "1"],
                 ["analyze", "img.npy", "--out", "img.npy"],
                 ["train", "img.npy", "--out", "."],
                 ["graphene", "img.npy", "--out", "."],
                 ["walls", "img.npy", "--out", "."],
                 ["unmix", "img.npy", "--out", "."]):
        res = CliRunner().invoke(app, argv)
        assert res.exit_code == 2, (argv, res.output)
        assert "error:" in res.output and "Traceback" not in res.output, argv
    assert _snapshot(tmp_path) == before
    assert img.exists()


def test_cli_encode_never_overwrites_an_input_or_a_foreign_file(tmp_path: Path) -> None:
    from latentatlas.datasets.shapes import rotated_shapes

    samples = tmp_path / "s.npy"
    np.save(samples, rotated_shapes(64, size=16).images)
    res = CliRunner().invoke(app, ["train", str(samples), "--model", "vae", "--epochs", "1",
                                   "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    before = samples.read_bytes()
    res = CliRunner().invoke(app, ["encode", str(tmp_path / "run"), str(samples), "--out",
                                   str(samples)])
    assert res.exit_code == 2 and "also an input" in res.output and samples.read_bytes() == before
    foreign = tmp_path / "other.npz"
    np.savez(foreign, data=np.zeros(3))
    res = CliRunner().invoke(app, ["encode", str(tmp_path / "run"), str(samples), "--out",
                                   str(foreign)])
    assert res.exit_code == 2 and "not written by latentatlas" in res.output
    ours = tmp_path / "lat.npz"
    for _ in range(2):  # a latents file written by encode may be replaced
        res = CliRunner().invoke(app, ["encode", str(tmp_path / "run"), str(samples), "--out",
                                       str(ours)])
        assert res.exit_code == 0, res.output


@pytest.mark.parametrize("argv, message", [
    (["train", "example:shapes", "--devices", "abc"], "devices must be"),
    (["train", "example:shapes", "--accelerator", "tpu9"], "accelerator must be"),
    (["train", "example:shapes", "--precision", "fp12"], "precision must be"),
    (["unmix", "x.npy", "--offset", "abc"], "--offset must be"),
    (["unmix", "x.npy", "--method", "magic"], "--method must be"),
])
def test_cli_options_are_checked_before_any_work(tmp_path: Path, argv: list[str],
                                                 message: str) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, 8, 16)).astype(np.float32))
    argv = [a if a != "x.npy" else str(tmp_path / "x.npy") for a in argv]
    res = CliRunner().invoke(app, [*argv, "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_cli_cuda_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    res = CliRunner().invoke(app, ["train", "example:shapes", "--accelerator", "cuda",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "no CUDA GPU" in res.output


def test_cli_read_only_out_is_refused_before_any_work(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere; permissions cannot be tested")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        res = CliRunner().invoke(app, ["train", "example:shapes", "--out", str(locked / "run")])
        assert res.exit_code == 2 and "not writable" in res.output
    finally:
        locked.chmod(0o700)


def test_cli_non_utf8_file_name_runs_to_the_end(tmp_path: Path) -> None:
    name = os.fsdecode(b"lat\xe9.npy")  # Latin-1, not valid UTF-8
    img = tmp_path / name
    _lattice(img)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["analyze", str(img), "--out", str(out), "--epochs", "1",
                                   "--quiet"])
    assert res.exit_code == 0, res.output
    assert "lat\ufffd.npy" in (out / "index.html").read_text(encoding="utf-8")
    assert read_marker(out) is not None


# --- kill -9 at random moments ----------------------------------------------------------------


def _run(argv: list[str], cwd: Path, kill_after: float | None = None) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*CLI, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if kill_after is None else subprocess.DEVNULL)
    err = b""
    if kill_after is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    else:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    return time.perf_counter() - t0, err.decode()


def _complete(folder: Path) -> dict[str, object]:
    marker = read_marker(folder)
    assert marker is not None, f"{folder} has no marker"
    for entry in marker["entries"]:
        assert (folder / entry).exists(), f"{entry} listed but missing"
    return marker


def _weights(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model" / "model.safetensors"))


@pytest.mark.parametrize("early", [True, False])
def test_kill_during_train_then_resume_equals_an_uninterrupted_run(tmp_path: Path,
                                                                   early: bool) -> None:
    from latentatlas.datasets.shapes import rotated_shapes

    np.save(tmp_path / "s.npy", rotated_shapes(200, size=20).images)
    args = ["train", "s.npy", "--model", "jrvae", "--epochs", "6", "--checkpoint-every", "1",
            "--batch-size", "32", "--accelerator", "cpu", "--quiet"]
    full_time, _ = _run([*args, "--out", "full"], tmp_path)
    # a random moment early in the run (often before the first checkpoint) or late in it
    low, high = (0.05, 0.5) if early else (0.6, 0.95)
    moment = float(np.random.default_rng(int(early)).uniform(low, high)) * full_time
    _run([*args, "--out", "killed"], tmp_path, kill_after=moment)
    had_checkpoint = (tmp_path / "killed" / "checkpoints" / "train_state.pt").exists()
    _, log = _run([*args, "--resume", "killed"], tmp_path)
    # the checkpoint a killed run left is found and used (a fresh start would give the same
    # weights, so this is checked on its own)
    assert ("resuming from" in log) == had_checkpoint, log
    if not early:
        assert had_checkpoint
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    _complete(tmp_path / "killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "killed", "s.npy"]


@pytest.mark.parametrize("command", ["analyze", "unmix"])
def test_kill_during_a_rerun_leaves_old_or_new_results_complete(tmp_path: Path,
                                                                command: str) -> None:
    if command == "analyze":
        _lattice(tmp_path / "in.npy")
        args = ["analyze", "in.npy", "--epochs", "2", "--quiet", "--out", "res"]
    else:
        cube = np.random.default_rng(0).random((24, 24, 64)).astype(np.float32)
        np.save(tmp_path / "in.npy", cube)
        args = ["unmix", "in.npy", "--method", "nmf", "-k", "3", "--quiet", "--out", "res"]
    (tmp_path / "keep.txt").write_text("mine")
    full_time, _ = _run([*args, "--seed", "0"], tmp_path)
    first = _complete(tmp_path / "res")["created"]
    for i, fraction in enumerate(np.random.default_rng(7).uniform(0.3, 1.0, size=1)):
        _run([*args, "--seed", str(i + 1)], tmp_path, kill_after=float(fraction) * full_time)
        marker = _complete(tmp_path / "res")
        assert marker["config"] is not None and (tmp_path / "keep.txt").read_text() == "mine"
        assert (tmp_path / "in.npy").exists()
    # the next run cleans up what a killed one left and completes
    _run([*args, "--seed", "9"], tmp_path)
    assert _complete(tmp_path / "res")["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "keep.txt", "res"]
    json.loads((tmp_path / "res" / MARKER).read_text())


def test_overwrite_never_replaces_a_users_file_of_the_same_name(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "a.txt").write_text("mine")
    (out / "figs").mkdir()
    (out / "figs" / "f.png").write_text("my figure")
    _write_run(out, {"a.txt": "ours", "b.txt": "ours"}, overwrite=True)
    assert (out / "a.txt").read_text() == "mine"
    assert (out / "figs" / "f.png").read_text() == "my figure"
    assert (out / "latentatlas-a.txt").read_text() == "ours"
    assert read_marker(out)["entries"] == ["b.txt", "latentatlas-a.txt"]
    # the next run recognises its own entries and replaces them, still not the user's
    _write_run(out, {"a.txt": "again", "b.txt": "again"}, overwrite=True)
    assert (out / "a.txt").read_text() == "mine"
    assert (out / "latentatlas-a.txt").read_text() == "again"


@pytest.mark.parametrize("overwrite_into_user_folder", [True, False])
def test_a_staging_folder_killed_while_moving_is_still_marked_and_cleaned_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overwrite_into_user_folder: bool) -> None:
    # a kill -9 while the staged entries are moved into place (the merge, or the final rename)
    # leaves the staging folder behind; it must still carry latentatlas's mark, so the next run
    # removes it instead of leaving a hidden folder in the user's directory
    import latentatlas.pipelines.outputs as outputs

    out = tmp_path / "d"
    if overwrite_into_user_folder:
        out.mkdir()
        (out / "mine.txt").write_text("mine")
    leftovers: list[Path] = []

    def killed_here(stage: Path, *rest: object) -> None:
        leftovers.append(stage.with_name(stage.name + "x"))
        shutil.copytree(stage, leftovers[-1])  # what a kill at this moment leaves behind
        real(stage, *rest)  # type: ignore[operator]

    name = "_merge" if overwrite_into_user_folder else "replace_directory"
    real = getattr(outputs, name)
    monkeypatch.setattr(outputs, name, killed_here)
    _write_run(out, {"a.txt": "ours"}, overwrite=overwrite_into_user_folder)
    monkeypatch.undo()
    assert leftovers and leftovers[0].exists()
    assert not (out / files.TEMPORARY_MARK).exists()
    _write_run(out, {"a.txt": "again"}, overwrite=True)
    assert not leftovers[0].exists()
    assert (out / "a.txt").read_text() == "again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    if overwrite_into_user_folder:
        assert (out / "mine.txt").read_text() == "mine"

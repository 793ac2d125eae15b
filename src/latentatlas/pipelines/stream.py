"""``analyze`` for movies and stacks larger than memory: the same job, chunk by chunk.

:func:`analyze_stream` reads the input lazily (:func:`latentatlas.io.load_lazy`: Zarr, HDF5,
TIFF, ``.npy``) and never holds more than a few chunks of frames:

1. atoms and patches, per chunk of whole frames (``workers`` chunks at a time, in threads):
   the atoms of every frame, and a patch around each, appended in frame order to a Zarr
   store inside the results folder (``results.zarr``: ``atoms/``, ``patches/``). A frame too
   large for the budget is cut into tiles read with a border (Dask ``map_overlap``): its
   atoms are those of the whole frame
   (:func:`~latentatlas.descriptors.chunked.find_atoms_chunked`, ``peaks``), its patches cut
   tile by tile;
2. training: on ``train_samples`` patches drawn as the in-memory ``analyze`` draws them
   (read from the store; memory bounded by ``train_samples``), or with
   ``train_samples=None`` on all of them through a :class:`~latentatlas.train.stream.
   PatchStream` (blocks of the store in a shuffled buffer);
3. encoding, one block of the store at a time, latents appended to ``latents/``;
4. classes: a Gaussian mixture fitted as ``analyze`` fits it (on at most 20,000 latents),
   applied block by block (``labels/``), and the classes painted on every frame
   (``label_maps``: uint8, 255 off the atoms), one frame at a time;
5. figures and the report for frame 0, ``config.json`` with the timings (per frame too)
   and the peak memory of the process.

On an input that fits in memory the atoms, patches, latents and classes equal those of
:func:`latentatlas.pipelines.analyze.analyze` with the same options (tested): the same
normalisation (``auto``: ``background`` for atom patches, on whole frames; frames cut into
tiles take ``image``, since the plane fit and percentiles of ``background`` span the whole
frame), the same training plan and draw of ``train_samples``, ``model_from`` reused alike.
``analyze``'s baselines and verdict are not computed (they need every patch in memory).

Memory: ``memory_budget`` sets how many frames a chunk holds (or how large a tile is), from an
estimate of the finder's working set (about 100 bytes per pixel) for ``workers + 1`` chunks
in flight, beside
a fixed ~0.6 GB for Python, torch and the libraries; the training set (``train_samples``
patches) and the stream buffers are small by comparison. None of it grows with the number
of frames: the atom table, patches and latents go to disk as they are made. The peak
resident memory of the run is recorded in ``config.json``.

Limits: atom finding ``peaks``, ``log`` and ``dcnn`` on whole frames, ``peaks`` on tiles; no
sliding windows, time-delay descriptors or channel lists.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentatlas._files import safe_text, write_text_atomic
from latentatlas._latent_names import content_columns
from latentatlas.analysis.labels import gmm_labels
from latentatlas.analysis.latent_maps import LatentMaps, paint_points, typical_spacing
from latentatlas.descriptors.atoms import find_atoms, intensity_classes
from latentatlas.descriptors.patches import extract_patches
from latentatlas.io.lazy import load_lazy
from latentatlas.pipelines.analyze import (
    AnalysisConfig,
    _auto_window,
    _pretrained,
    training_plan,
)
from latentatlas.pipelines.outputs import check_output, results_folder

log = logging.getLogger(__name__)

__all__ = ["StreamResult", "analyze_stream", "parse_bytes"]

#: resident memory of Python with torch, scipy, dask and zarr imported, before any data
BASE_BYTES = 600 * 2**20
#: the finder's and the patch cutter's working set per pixel of a frame (float64 copies)
BYTES_PER_PIXEL = 100
#: latents kept in memory for the classes when they take at most this share of the budget
_LATENTS_SHARE = 8
PATCH_BLOCK = 4096


def parse_bytes(size: int | str) -> int:
    """``"4 GB"``, ``"512MiB"``, ``"2e9"`` or an int -> bytes (GB = 10^9, GiB = 2^30)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return int(size)
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)(i?)[bB]?\s*", str(size))
    if not m:
        raise ValueError(f"memory_budget must be bytes or a size like '4 GB', got {size!r}")
    base = 1024 if m.group(3) else 1000
    power = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * base**power)


@dataclass
class StreamResult:
    """What :func:`analyze_stream` wrote: the folder, its Zarr store and the figures."""

    out: Path
    config: AnalysisConfig
    n_frames: int
    n_atoms: int
    n_patches: int
    frames_per_chunk: int
    latent_names: list[str]
    n_classes: int
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    memory_budget: int = 0
    model: Any = None

    @property
    def store(self) -> Path:
        return self.out / "results.zarr"

    def open(self) -> Any:
        """The results as a read-only Zarr group."""
        import zarr

        return zarr.open_group(str(self.store), mode="r")


def _peak_rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class _Appender:
    """Arrays of a Zarr group that grow along their first axis, chunk by chunk."""

    def __init__(self, group: Any) -> None:
        self.group = group
        self.arrays: dict[str, Any] = {}

    def append(self, name: str, values: np.ndarray, rows: int = PATCH_BLOCK) -> None:
        if name not in self.arrays:
            self.arrays[name] = self.group.create_array(
                name, shape=(0, *values.shape[1:]), chunks=(rows, *values.shape[1:]),
                dtype=values.dtype)
        if len(values):
            self.arrays[name].append(values)

    def length(self, name: str) -> int:
        return int(self.arrays[name].shape[0]) if name in self.arrays else 0


def _chunking(h: int, w: int, budget: int, workers: int, frames: int | None,
              tile: int | None) -> tuple[int, int | None]:
    """Frames per chunk, and the tile side when frames must be cut into tiles (else None)."""
    room = budget - BASE_BYTES
    if room < (workers + 1) * 512 * 512 * BYTES_PER_PIXEL:
        need = BASE_BYTES + (workers + 1) * 512 * 512 * BYTES_PER_PIXEL
        raise ValueError(
            f"memory_budget {budget / 1e9:.2f} GB is too small: about {need / 1e9:.2f} GB are "
            f"needed for {workers} workers on 512 x 512 tiles; raise memory_budget or lower "
            "workers")
    per_frame = h * w * BYTES_PER_PIXEL
    if tile is None and room >= (workers + 1) * per_frame:
        fits = max(1, room // ((workers + 1) * per_frame))
        return int(min(fits, 64) if frames is None else min(frames, fits)), None
    if tile is None:  # the largest square tile (a multiple of 256) the budget holds
        tile = int(np.sqrt(room / ((workers + 1) * BYTES_PER_PIXEL))) // 256 * 256
    if tile < 64:
        raise ValueError(f"tile must be >= 64 pixels, got {tile}")
    return 1, int(tile)


def _frames_view(data: Any) -> Any:
    """The lazy array as ``(n_frames, h, w)`` (singleton axes dropped)."""
    arr = data
    if arr.ndim > 2:
        keep = [i for i, n in enumerate(arr.shape) if n != 1]
        arr = arr.reshape([arr.shape[i] for i in keep]) if len(keep) >= 2 else arr
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"analyze_stream needs an image (h, w) or a stack (n_frames, h, w); "
                         f"got shape {data.shape}")
    return arr


def _chunk_results(stack: Any, bounds: list[tuple[int, int]], work: Any, workers: int
                   ) -> Iterator[Any]:
    """``work(frames, f0)`` on every chunk, ``workers`` at a time, results in order; at most
    ``workers + 1`` chunks are read or held at once."""
    def run(f0: int, f1: int) -> Any:
        frames = np.asarray(stack[f0:f1].compute(scheduler="synchronous"))
        return work(frames, f0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[Any]] = []
        todo = iter(bounds)
        for f0, f1 in todo:
            pending.append(pool.submit(run, f0, f1))
            if len(pending) > workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _tiled_frame(stack: Any, k: int, tile: int, win: int, cfg: AnalysisConfig, norm: str,
                 atom_options: dict[str, Any], class_sigma: float | None, sign: float,
                 workers: int) -> tuple[Any, np.ndarray, Iterator[Any]]:
    """Frame ``k`` in tiles: its atoms (``find_atoms_chunked``, equal to the whole-frame
    finder), their class intensities, and an iterator over the patches of each tile (atoms
    whose rounded centre lies in the tile's core, cut from the tile read with a border of
    half a window; in tile order, ``index`` giving the atom)."""
    import dask

    from latentatlas.descriptors.chunked import find_atoms_chunked, intensity_at_atoms

    if cfg.atoms != "peaks":
        raise ValueError(f"frames cut into tiles are searched with 'peaks' only, got "
                         f"{cfg.atoms!r}; raise memory_budget so whole frames fit")
    _, h, w = stack.shape
    x = (sign * stack[k:k + 1].astype(np.float32)).rechunk((1, tile, tile))
    found = find_atoms_chunked(x, "peaks", **atom_options)
    frame0 = np.zeros(len(found), np.int64)
    values = (intensity_at_atoms(x, found.positions, frame0, class_sigma)
              if class_sigma is not None and len(found) else np.zeros(len(found)))
    lo = hi = np.float32(0)
    if norm == "image":
        lo, hi = (np.float32(v) for v in dask.compute(x.min(), x.max()))
    rc = np.rint(found.positions).astype(np.int64)
    halo = win // 2 + 2
    boxes = [(r0, c0) for r0 in range(0, h, tile) for c0 in range(0, w, tile)]

    def cut(box: tuple[int, int]) -> Any:
        r0, c0 = box
        sel = np.flatnonzero((rc[:, 0] >= r0) & (rc[:, 0] < r0 + tile) & (rc[:, 1] >= c0)
                             & (rc[:, 1] < c0 + tile))
        if len(sel) == 0:
            return None
        top, left = max(0, r0 - halo), max(0, c0 - halo)
        block = np.asarray(x[0, top:r0 + tile + halo, left:c0 + tile + halo].compute(
            scheduler="synchronous"))
        if norm == "image":  # as normalize_images does on the whole frame
            block = ((block - lo) / (hi - lo if hi > lo else np.float32(1.0))).astype(np.float32)
        try:
            p = extract_patches(block, found.positions[sel] - [top, left], win,
                                classes=found.classes[sel], border=cfg.border,  # type: ignore[arg-type]
                                normalize="none" if norm == "image" else norm)  # type: ignore[arg-type]
        except ValueError:  # every atom of the tile lies within half a window of the edge
            return None
        p.centers += [top, left]
        p.index = sel[p.index]
        return p

    def pieces() -> Iterator[Any]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending: list[Future[Any]] = []
            for box in boxes:
                pending.append(pool.submit(cut, box))
                if len(pending) > workers:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()

    return found, values, pieces()


def analyze_stream(
    source: Any,
    out: str | Path,
    atoms: str = "peaks",
    window: int | None = None,
    model: str = "rvae",
    *,
    memory_budget: int | str = "4 GB",
    frames_per_chunk: int | None = None,
    tile: int | None = None,
    workers: int = 2,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> StreamResult:
    """Run ``analyze`` on an image stack chunk by chunk, writing results as they are made.

    Parameters
    ----------
    source : a file :func:`~latentatlas.io.load_lazy` opens (``.zarr``, ``.h5``, ``.tif``,
        ``.npy``), a Dask or NumPy array ``(n_frames, h, w)`` or ``(h, w)``, or a Dataset.
    out : the results folder (see :mod:`latentatlas.pipelines.outputs`).
    atoms : ``peaks``, ``log`` or ``dcnn``.
    window, model : as in ``analyze``.
    memory_budget : bytes (or ``"4 GB"``) the run should stay under; sets the frames per
        chunk (see the module docstring).
    frames_per_chunk : frames read at a time (default: as many as the budget allows, <= 64).
    tile : cut every frame into square tiles of this side (``peaks`` only); by default frames
        are cut only when one does not fit the budget, into the largest tiles that do. Atoms
        are then those of the whole frame (:func:`~latentatlas.descriptors.chunked.
        find_atoms_chunked`), their patches stored tile by tile.
    workers : chunks processed at the same time (threads).
    options : :class:`~latentatlas.pipelines.analyze.AnalysisConfig` fields (epochs,
        latent_dim, train_samples, n_components, normalize, border, atom_options, seed,
        channel, invert, ...).
    """
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    budget = parse_bytes(memory_budget)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = AnalysisConfig(atoms=atoms, window=window, model=model, **options)
    if cfg.atoms not in ("peaks", "log", "dcnn"):
        raise ValueError(f"analyze_stream finds atoms with 'peaks', 'log' or 'dcnn', got "
                         f"{cfg.atoms!r}; sliding windows need the in-memory analyze")
    if cfg.time_delay != 1 or isinstance(cfg.channel, list):
        raise ValueError("analyze_stream reads one channel without time-delay descriptors; "
                         "use the in-memory analyze for those")
    inputs = [os.fspath(source)] if isinstance(source, (str, os.PathLike)) else []
    plan = check_output(out, inputs, overwrite)

    t = time.perf_counter()
    data = load_lazy(source, cfg.channel)
    stack = _frames_view(data.data)
    n_frames, h, w = (int(s) for s in stack.shape)
    per_chunk, tile = _chunking(h, w, budget, workers, frames_per_chunk, tile)
    bounds = [(f, min(f + per_chunk, n_frames)) for f in range(0, n_frames, per_chunk)]
    timings["open"] = time.perf_counter() - t
    log.info("streaming %s: %d frames of %d x %d, %d per chunk, budget %.2f GB",
             data.name or data.source, n_frames, h, w, per_chunk, budget / 1e9)

    atom_options = dict(cfg.atom_options)
    n_classes = int(atom_options.pop("n_classes", 1))
    seed_atoms = int(atom_options.pop("seed", 0))
    sign = -1.0 if cfg.invert else 1.0

    def frames_of(f0: int, f1: int) -> np.ndarray:
        return sign * np.asarray(stack[f0:f1].compute(scheduler="synchronous"),
                                 dtype=np.float32)

    # the window (and the DCNN's resampling) come from frame 0, as in memory
    if tile is None:
        first = find_atoms(frames_of(0, 1)[0], cfg.atoms, **atom_options)
    else:
        from latentatlas.descriptors.chunked import find_atoms_chunked

        first = find_atoms_chunked((sign * stack[:1].astype(np.float32)).rechunk(
            (1, tile, tile)), "peaks", **atom_options)
    if len(first) == 0:
        raise ValueError(f"the atom finder {cfg.atoms!r} found no atoms in frame 0; try "
                         "another method or other atom_options")
    if cfg.atoms == "dcnn" and "scale" not in atom_options:
        atom_options["scale"] = first.params["scale"]
    pretrained = None if cfg.model_from is None else _pretrained(cfg)
    if pretrained is not None:  # its patch side, as analyze does
        win = int(pretrained.config.input_shape[-1])
    else:
        win = cfg.window or _auto_window(typical_spacing(first.positions), (h, w))
    norm = cfg.normalization(windows=False)
    if tile is not None and norm == "background":
        if cfg.normalize != "auto":
            raise ValueError(
                "normalize='background' needs whole frames (its plane fit and percentiles are "
                "over the frame); frames cut into tiles take 'image', 'patch', 'standardize' "
                "or 'none', or raise memory_budget so whole frames fit")
        log.warning("frames cut into tiles: patches normalised with 'image' (the 'auto' "
                    "choice for atoms, 'background', needs whole frames)")
        norm = "image"
    background_sigma = cfg.background_sigma or win
    class_sigma = max(0.15 * float(np.median(np.atleast_1d(first.params["spacing"]))), 0.7)

    from tqdm.auto import tqdm

    with results_folder(plan, "analyze-stream", cfg.to_dict(), inputs) as tmp:
        import zarr

        root = zarr.open_group(str(tmp / "results.zarr"), mode="w")

        def work(frames: np.ndarray, f0: int) -> tuple[Any, ...]:
            frames = sign * frames.astype(np.float32)
            found = find_atoms(frames, cfg.atoms, n_classes=1, **atom_options)
            value = np.zeros(len(found))
            if n_classes > 1:
                from scipy import ndimage

                sm = ndimage.gaussian_filter(frames.astype(np.float64),
                                             (0, class_sigma, class_sigma))
                r = np.clip(np.round(found.row).astype(np.int64), 0, h - 1)
                c = np.clip(np.round(found.col).astype(np.int64), 0, w - 1)
                value = sm[found.frame, r, c]
            if len(found) == 0:
                return found, value, None
            patches = extract_patches(frames, found.positions, win, frames=found.frame,
                                      classes=found.classes, border=cfg.border,  # type: ignore[arg-type]
                                      normalize=norm,  # type: ignore[arg-type]
                                      background_sigma=background_sigma)
            return found, value, patches

        # -- 1: atoms and patches
        t = time.perf_counter()
        bar = tqdm(total=n_frames, desc="atoms and patches", disable=not progress, leave=False)
        atoms_root, patch_root = root.create_group("atoms"), root.create_group("patches")
        atoms_out, patches_out = _Appender(atoms_root), _Appender(patch_root)
        n_atoms = 0

        def units() -> Iterator[tuple[int, int, Any, np.ndarray, Iterator[Any]]]:
            """(first frame, end frame, atoms, class intensities, patch pieces) per unit."""
            if tile is None:
                for (f0, f1), (found, value, patches) in zip(
                        bounds, _chunk_results(stack, bounds, work, workers), strict=True):
                    yield f0, f1, found, value, iter([] if patches is None else [patches])
            else:
                for k in range(n_frames):
                    found, value, pieces = _tiled_frame(
                        stack, k, tile, win, cfg, norm, atom_options,
                        class_sigma if n_classes > 1 else None, sign, workers)
                    yield k, k + 1, found, value, pieces

        for f0, f1, found, value, pieces in units():
            atoms_out.append("positions", found.positions.astype(np.float64), 1 << 16)
            atoms_out.append("frames", (found.frame + f0).astype(np.int64), 1 << 16)
            atoms_out.append("values", value.astype(np.float64), 1 << 16)
            for patches in pieces:
                if patches is None:
                    continue
                patches_out.append("data", patches.data)
                patches_out.append("centers", patches.centers)
                patches_out.append("frames", (patches.frames + f0).astype(np.int64))
                patches_out.append("index", (patches.index + n_atoms).astype(np.int64))
                patches_out.append("classes", patches.classes.astype(np.int64))
            n_atoms += len(found)
            bar.update(f1 - f0)
        bar.close()
        timings["atoms_patches"] = time.perf_counter() - t
        m = patches_out.length("data")
        if m < 4:
            raise ValueError(f"only {m} patches: too few to train a model; use a smaller window "
                             "or border='pad'")
        classes = np.zeros(0, np.int64)
        if n_classes > 1:
            classes = intensity_classes(np.asarray(atoms_out.arrays["values"][:]), n_classes,
                                        seed_atoms)
            atoms_out.append("classes", classes, 1 << 16)
            index, patch_cls = patches_out.arrays["index"], patches_out.arrays["classes"]
            for i in range(0, m, PATCH_BLOCK):
                patch_cls[i:i + PATCH_BLOCK] = classes[np.asarray(index[i:i + PATCH_BLOCK])]
        log.info("%d atoms, %d patches of %d x %d", n_atoms, m, win, win)

        # -- 2: training
        from latentatlas.models import get_model

        data_arr = patches_out.arrays["data"]
        channels = int(data_arr.shape[1])
        shape = (win, win) if channels == 1 else (channels, win, win)
        t = time.perf_counter()
        if pretrained is not None:
            expected = tuple(pretrained.config.input_shape)
            if (channels, win, win) != expected:
                raise ValueError(f"the model from {cfg.model_from} takes patches {expected} "
                                 f"but these are {(channels, win, win)}")
            vae = pretrained
        elif cfg.train_samples is None:
            from latentatlas.train.stream import PatchStream

            vae = get_model(cfg.model, input_shape=shape, latent_dim=cfg.latent_dim,
                            seed=cfg.seed, **cfg.model_options)
            plan_ = training_plan(cfg, m, vae)
            vae.fit(PatchStream(data_arr, seed=cfg.seed), epochs=plan_["epochs"],
                    batch_size=plan_["batch_size"], lr=cfg.lr, seed=cfg.seed,
                    progress=progress, schedules=plan_["schedules"])
        else:
            vae = get_model(cfg.model, input_shape=shape, latent_dim=cfg.latent_dim,
                            seed=cfg.seed, **cfg.model_options)
            pick = np.arange(m)
            if m > cfg.train_samples:
                pick = np.sort(np.random.default_rng(cfg.seed).choice(m, cfg.train_samples,
                                                                      replace=False))
            train_x = np.asarray(data_arr.oindex[pick])
            train_x = train_x[:, 0] if channels == 1 else train_x
            plan_ = training_plan(cfg, len(train_x), vae)
            vae.fit(train_x, epochs=plan_["epochs"], batch_size=plan_["batch_size"], lr=cfg.lr,
                    seed=cfg.seed, progress=progress, schedules=plan_["schedules"])
            del train_x
        timings["train"] = time.perf_counter() - t

        # -- 3: encoding
        t = time.perf_counter()
        lat_root = root.create_group("latents")
        lat_out = _Appender(lat_root)
        names: list[str] = []
        for i in range(0, m, PATCH_BLOCK):
            x = np.asarray(data_arr[i:i + PATCH_BLOCK])
            lat = vae.encode(x[:, 0] if channels == 1 else x)
            names = list(lat.names)
            lat_out.append("mean", np.asarray(lat.mean, np.float32))
            lat_out.append("std", np.asarray(lat.std, np.float32))
        timings["encode"] = time.perf_counter() - t

        # -- 4: classes
        t = time.perf_counter()
        cols = (content_columns(names)
                if cfg.cluster_on == "content" else list(range(len(names))))
        labels_out = _Appender(root.create_group("labels"))
        n_comp = _classes(lat_out.arrays["mean"], cols, cfg, names, labels_out, budget)
        timings["labels"] = time.perf_counter() - t

        t = time.perf_counter()
        maps = root.create_array("label_maps", shape=(n_frames, h, w),
                                 chunks=(1, tile or h, tile or w),
                                 dtype="uint8", fill_value=255)
        _paint(patches_out.arrays["frames"], patches_out.arrays["centers"],
               labels_out.arrays["labels"], maps, workers, tile)
        timings["paint"] = time.perf_counter() - t

        # -- 5: figures, report, config
        t = time.perf_counter()
        peak = _peak_rss()
        timings["per_frame"] = (timings["atoms_patches"] + timings["encode"] + timings["paint"]
                                ) / n_frames
        summary: dict[str, Any] = {
            "frames": n_frames, "frame_shape": [h, w], "atoms": n_atoms, "patches": m,
            "window": win, "normalize": norm, "frames_per_chunk": per_chunk, "tile": tile,
            "workers": workers, "memory_budget_bytes": budget, "latent_names": names,
            "n_classes": n_comp}
        root.attrs["latentatlas"] = {"analysis": cfg.to_dict(), **summary}
        vae.save(tmp / "model")
        crop = (0, h, 0, w) if tile is None else (
            max(0, h // 2 - 512), min(h, h // 2 + 512), max(0, w // 2 - 512), min(w, w // 2 + 512))
        figs = _figures(stack, sign, crop, patches_out, lat_out, labels_out, maps, names, tmp)
        timings["figures"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_all
        peak = max(peak, _peak_rss())
        summary["peak_rss_bytes"] = peak
        source_text = safe_text(data.source or data.name or "array")
        config = {"analysis": cfg.to_dict(), "source": source_text, **summary,
                  "timings": timings}
        write_text_atomic(tmp / "config.json", json.dumps(config, indent=2, default=safe_text))
        from latentatlas.report import write_report

        write_report(tmp / "index.html", f"latentatlas analyze (streamed): {source_text}", figs,
                     {"Input": {"source": source_text, "frames": n_frames,
                                "frame": f"{h} x {w}", "dtype": str(stack.dtype)},
                      "Parameters": cfg.to_dict(), "Run": summary,
                      "Timings (s)": {k: round(v, 4) for k, v in timings.items()}})
    if peak > budget:
        log.warning("peak memory %.2f GB exceeded the budget of %.2f GB", peak / 1e9,
                    budget / 1e9)
    return StreamResult(out=plan.path, config=cfg, n_frames=n_frames, n_atoms=n_atoms,
                        n_patches=m, frames_per_chunk=per_chunk, latent_names=names,
                        n_classes=n_comp, timings=timings, peak_rss_bytes=peak,
                        memory_budget=budget, model=vae)


def _classes(means: Any, cols: list[int], cfg: AnalysisConfig, names: list[str],
             out: _Appender, budget: int) -> int:
    """Gaussian-mixture classes of the latents, written block by block; returns their count.

    When the latents fit in an eighth of the budget this is ``gmm_labels`` on all of them,
    as ``analyze`` does; otherwise the mixture is fitted the same way on the same seeded
    sample of 20,000 (standardised by the mean and spread of all latents) and applied per
    block.
    """
    m = int(means.shape[0])
    features = [names[i] for i in cols]
    if m * len(cols) * 8 * _LATENTS_SHARE <= budget:
        x = np.asarray(means[:])[:, cols]
        lab = gmm_labels(x, n_components=cfg.n_components, max_components=cfg.max_components,
                         random_state=cfg.seed, feature_names=features)
        for i in range(0, m, PATCH_BLOCK):
            out.append("labels", lab.labels[i:i + PATCH_BLOCK].astype(np.int64))
            out.append("probabilities", lab.probabilities[i:i + PATCH_BLOCK])
        return int(lab.n_components)
    total = np.zeros(len(cols))
    total_sq = np.zeros(len(cols))
    for i in range(0, m, 1 << 18):
        b = np.asarray(means[i:i + (1 << 18)], dtype=np.float64)[:, cols]
        total += b.sum(0)
        total_sq += (b * b).sum(0)
    mu = total / m
    sd = np.sqrt(np.maximum(total_sq / m - mu**2, 0.0))
    sd = np.where(sd > 0, sd, 1.0)
    pick = np.sort(np.random.default_rng(cfg.seed).choice(m, 20000, replace=False))
    sample = (np.asarray(means.oindex[pick], dtype=np.float64)[:, cols] - mu) / sd
    lab = gmm_labels(sample, n_components=cfg.n_components, max_components=cfg.max_components,
                     random_state=cfg.seed, feature_names=features)
    gm = lab.model
    assert gm is not None
    # gmm_labels standardised the (already standardised) sample once more: repeat it
    s_mu, s_sd = sample.mean(0), sample.std(0)
    s_sd = np.where(s_sd > 0, s_sd, 1.0)
    assert lab.classes_of_components is not None
    for i in range(0, m, PATCH_BLOCK):
        b = (np.asarray(means[i:i + PATCH_BLOCK], dtype=np.float64)[:, cols] - mu) / sd
        z = (b - s_mu) / s_sd
        # classes are groups of the mixture's components (merged modes), in label order
        out.append("labels", lab.classes_of_components[gm.predict(z)])
        out.append("probabilities", lab.predict_proba(z))
    return int(lab.n_components)


def _paint(frames: Any, centers: Any, labels: Any, maps: Any, workers: int,
           tile: int | None) -> None:
    """Paint each frame's classes (discs of half the typical spacing) into ``maps``, reading
    the patch table block by block; a frame is painted (``workers`` at a time, in threads)
    once its last patch has been read, tile by tile when frames are tiled (each tile from
    the points within a disc radius of it: the same nearest-point painting)."""
    h, w = maps.shape[1:]
    m = int(frames.shape[0])

    def flush(frame: int, c: np.ndarray, lab: np.ndarray) -> None:
        if tile is None:
            raster = paint_points(lab, c, (h, w))
            maps[frame] = np.where(np.isnan(raster), 255, raster).astype(np.uint8)
            return
        radius = 0.5 * typical_spacing(c)
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                r1, c1 = min(r0 + tile, h), min(c0 + tile, w)
                near = ((c[:, 0] > r0 - radius - 1) & (c[:, 0] < r1 + radius + 1)
                        & (c[:, 1] > c0 - radius - 1) & (c[:, 1] < c1 + radius + 1))
                raster = paint_points(lab[near], c[near] - [r0, c0], (r1 - r0, c1 - c0),
                                      radius)
                maps[frame, r0:r1, c0:c1] = np.where(np.isnan(raster), 255,
                                                     raster).astype(np.uint8)

    held: tuple[np.ndarray, np.ndarray, np.ndarray] = (
        np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0, np.int64))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[None]] = []
        for i in range(0, m, PATCH_BLOCK):
            f = np.concatenate([held[0], np.asarray(frames[i:i + PATCH_BLOCK])])
            c = np.concatenate([held[1], np.asarray(centers[i:i + PATCH_BLOCK])])
            lab = np.concatenate([held[2], np.asarray(labels[i:i + PATCH_BLOCK])])
            last = i + PATCH_BLOCK >= m
            complete = np.ones(len(f), dtype=bool) if last else f < f[-1]
            for frame in np.unique(f[complete]).tolist():
                sel = f == frame
                pending.append(pool.submit(flush, int(frame), c[sel], lab[sel]))
                while len(pending) > 2 * workers:
                    pending.pop(0).result()
            held = (f[~complete], c[~complete], lab[~complete])
        for fut in pending:
            fut.result()


def _figures(stack: Any, sign: float, crop: tuple[int, int, int, int], patches: _Appender,
             latents: _Appender, labels: _Appender, maps: Any, names: list[str], folder: Path
             ) -> list[tuple[str, Path]]:
    """Frame 0 (its ``crop`` rows r0:r1, columns c0:c1): the input with its atoms, one map
    per latent, the classes."""
    from matplotlib.figure import Figure

    from latentatlas.plots.maps import latent_maps_figure, plot_labels, save_figure

    r0, r1, c0, c1 = crop
    frames = np.asarray(patches.arrays["frames"][:min(patches.length("frames"), 1 << 22)])
    first = np.flatnonzero(frames == 0)
    centers = np.asarray(patches.arrays["centers"].oindex[first]) if len(first) else \
        np.zeros((0, 2))
    inside = ((centers[:, 0] >= r0) & (centers[:, 0] < r1) & (centers[:, 1] >= c0)
              & (centers[:, 1] < c1))
    sel, centers = first[inside], centers[inside] - [r0, c0]
    img = sign * np.asarray(stack[0, r0:r1, c0:c1].compute(scheduler="synchronous"),
                            dtype=np.float32)
    what = "frame 0" if (r1 - r0, c1 - c0) == tuple(stack.shape[1:]) else \
        f"frame 0, rows {r0}-{r1}, columns {c0}-{c1}"
    figs: list[tuple[str, Path]] = []
    fig = Figure(figsize=(6, 6), layout="tight")
    ax = fig.subplots()
    ax.imshow(img, cmap="gray")
    ax.scatter(centers[:, 1], centers[:, 0], s=6, c="tab:red", linewidths=0)
    ax.set_title(f"{what} of {stack.shape[0]}, {len(sel)} patches")
    figs.append((f"Input ({what}) with patch centres", save_figure(fig, folder / "image.png")))
    if len(sel):
        mean = np.asarray(latents.arrays["mean"].oindex[sel])
        lab = np.asarray(labels.arrays["labels"].oindex[sel])
        lm = LatentMaps(names=names, values=mean, std=np.zeros_like(mean), centers=centers,
                        frames=np.zeros(len(sel), np.int64), image_shape=img.shape,
                        n_frames=int(stack.shape[0]))
        figs.append((f"Latent maps ({what})", save_figure(latent_maps_figure(lm, image=img),
                                                          folder / "latent_maps.png")))
        raster = np.asarray(maps[0, r0:r1, c0:c1]).astype(np.float64)
        raster[raster == 255] = np.nan
        fig = Figure(figsize=(6, 6), layout="tight")
        plot_labels(fig.subplots(), centers, lab, image=img, label_raster=raster)
        figs.append((f"Classes ({what})", save_figure(fig, folder / "labels.png")))
    return figs

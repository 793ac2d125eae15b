"""``analyze`` for movies and stacks larger than memory: the same job, chunk by chunk.

:func:`analyze_stream` reads the input lazily (:func:`latentatlas.io.load_lazy`: Zarr, HDF5,
TIFF, ``.npy``) and never holds more than a few chunks of frames:

1. atoms and patches, per chunk of whole frames (``workers`` chunks at a time, in threads):
   the atoms of every frame, and a patch around each, appended in frame order to a Zarr
   store inside the results folder (``results.zarr``: ``atoms/``, ``patches/``);
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
:func:`latentatlas.pipelines.analyze.analyze` with the same options (tested).

Memory: ``memory_budget`` sets how many frames a chunk holds, from an estimate of the
finder's working set (about 100 bytes per pixel) for ``workers + 1`` chunks in flight, beside
a fixed ~0.6 GB for Python, torch and the libraries; the training set (``train_samples``
patches) and the stream buffers are small by comparison. None of it grows with the number
of frames: the atom table, patches and latents go to disk as they are made. The peak
resident memory of the run is recorded in ``config.json``.

Limits: frames are processed whole (a frame must fit in the budget; single images larger
than memory can be searched for atoms with
:func:`latentatlas.descriptors.chunked.find_atoms_chunked`); atom finding ``peaks``,
``log`` and ``dcnn``; no sliding windows, time-delay descriptors or channel lists.
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
from latentatlas.analysis.labels import gmm_labels
from latentatlas.analysis.latent_maps import LatentMaps, paint_points, typical_spacing
from latentatlas.descriptors.atoms import find_atoms, intensity_classes
from latentatlas.descriptors.patches import extract_patches
from latentatlas.io.lazy import load_lazy
from latentatlas.pipelines.analyze import AnalysisConfig, _auto_window
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


def _frames_per_chunk(h: int, w: int, budget: int, workers: int, requested: int | None) -> int:
    per_frame = h * w * BYTES_PER_PIXEL
    room = budget - BASE_BYTES
    if room < (workers + 1) * per_frame:
        need = BASE_BYTES + (workers + 1) * per_frame
        raise ValueError(
            f"memory_budget {budget / 1e9:.2f} GB is too small for {h} x {w} frames with "
            f"{workers} workers: about {need / 1e9:.2f} GB are needed; raise memory_budget or "
            "lower workers")
    fits = max(1, room // ((workers + 1) * per_frame))
    return int(min(fits, 64) if requested is None else min(requested, fits))


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


def analyze_stream(
    source: Any,
    out: str | Path,
    atoms: str = "peaks",
    window: int | None = None,
    model: str = "rvae",
    *,
    memory_budget: int | str = "4 GB",
    frames_per_chunk: int | None = None,
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
    per_chunk = _frames_per_chunk(h, w, budget, workers, frames_per_chunk)
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
    first = find_atoms(frames_of(0, 1)[0], cfg.atoms, **atom_options)
    if len(first) == 0:
        raise ValueError(f"the atom finder {cfg.atoms!r} found no atoms in frame 0; try "
                         "another method or other atom_options")
    if cfg.atoms == "dcnn" and "scale" not in atom_options:
        atom_options["scale"] = first.params["scale"]
    win = cfg.window or _auto_window(typical_spacing(first.positions), (h, w))
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
                                      normalize=cfg.normalize)  # type: ignore[arg-type]
            return found, value, patches

        # -- 1: atoms and patches
        t = time.perf_counter()
        bar = tqdm(total=n_frames, desc="atoms and patches", disable=not progress, leave=False)
        atoms_root, patch_root = root.create_group("atoms"), root.create_group("patches")
        atoms_out, patches_out = _Appender(atoms_root), _Appender(patch_root)
        n_atoms = 0
        for (f0, f1), (found, value, patches) in zip(
                bounds, _chunk_results(stack, bounds, work, workers),
                strict=True):
            atoms_out.append("positions", found.positions.astype(np.float64), 1 << 16)
            atoms_out.append("frames", (found.frame + f0).astype(np.int64), 1 << 16)
            atoms_out.append("values", value.astype(np.float64), 1 << 16)
            if patches is not None:
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
        vae = get_model(cfg.model, input_shape=shape, latent_dim=cfg.latent_dim, seed=cfg.seed)
        t = time.perf_counter()
        train_opts = dict(epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed, progress=progress)
        if cfg.train_samples is None:
            from latentatlas.train.stream import PatchStream

            stream = PatchStream(data_arr, seed=cfg.seed)
            vae.fit(stream, batch_size=cfg.batch_size, **train_opts)
        else:
            pick = np.arange(m)
            if m > cfg.train_samples:
                pick = np.sort(np.random.default_rng(cfg.seed).choice(m, cfg.train_samples,
                                                                      replace=False))
            train_x = np.asarray(data_arr.oindex[pick])
            train_x = train_x[:, 0] if channels == 1 else train_x
            vae.fit(train_x, batch_size=min(cfg.batch_size, len(train_x)), **train_opts)
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
        cols = ([i for i, n in enumerate(names) if n.startswith("z")]
                if cfg.cluster_on == "content" else list(range(len(names))))
        labels_out = _Appender(root.create_group("labels"))
        n_comp = _classes(lat_out.arrays["mean"], cols, cfg, names, labels_out, budget)
        timings["labels"] = time.perf_counter() - t

        t = time.perf_counter()
        maps = root.create_array("label_maps", shape=(n_frames, h, w), chunks=(1, h, w),
                                 dtype="uint8", fill_value=255)
        _paint(patches_out.arrays["frames"], patches_out.arrays["centers"],
               labels_out.arrays["labels"], maps, workers)
        timings["paint"] = time.perf_counter() - t

        # -- 5: figures, report, config
        t = time.perf_counter()
        peak = _peak_rss()
        timings["per_frame"] = (timings["atoms_patches"] + timings["encode"] + timings["paint"]
                                ) / n_frames
        summary: dict[str, Any] = {"frames": n_frames, "frame_shape": [h, w], "atoms": n_atoms, "patches": m,
                   "window": win, "frames_per_chunk": per_chunk, "workers": workers,
                   "memory_budget_bytes": budget, "latent_names": names,
                   "n_classes": n_comp}
        root.attrs["latentatlas"] = {"analysis": cfg.to_dict(), **summary}
        vae.save(tmp / "model")
        figs = _figures(stack, frames_of, patches_out, lat_out, labels_out, maps, names, tmp)
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
    raw = gm.predict((sample - s_mu) / s_sd)
    relabel = np.zeros(gm.n_components, dtype=np.int64)
    relabel[raw] = lab.labels  # the population order gmm_labels chose
    order = np.argsort(relabel)
    for i in range(0, m, PATCH_BLOCK):
        b = (np.asarray(means[i:i + PATCH_BLOCK], dtype=np.float64)[:, cols] - mu) / sd
        z = (b - s_mu) / s_sd
        out.append("labels", relabel[gm.predict(z)])
        out.append("probabilities", gm.predict_proba(z)[:, order])
    return int(lab.n_components)


def _paint(frames: Any, centers: Any, labels: Any, maps: Any, workers: int) -> None:
    """Paint each frame's classes (discs of half the typical spacing) into ``maps``, reading
    the patch table block by block; a frame is painted (``workers`` at a time, in threads)
    once its last patch has been read."""
    h, w = maps.shape[1:]
    m = int(frames.shape[0])

    def flush(frame: int, c: np.ndarray, lab: np.ndarray) -> None:
        raster = paint_points(lab, c, (h, w))
        maps[frame] = np.where(np.isnan(raster), 255, raster).astype(np.uint8)

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


def _figures(stack: Any, frames_of: Any, patches: _Appender, latents: _Appender,
             labels: _Appender, maps: Any, names: list[str], folder: Path
             ) -> list[tuple[str, Path]]:
    """Frame 0: the input with its atoms, one map per latent, the classes."""
    from matplotlib.figure import Figure

    from latentatlas.plots.maps import latent_maps_figure, plot_labels, save_figure

    frames = np.asarray(patches.arrays["frames"][:min(patches.length("frames"), 1 << 20)])
    sel = np.flatnonzero(frames == 0)
    img = frames_of(0, 1)[0]
    h, w = img.shape
    centers = np.asarray(patches.arrays["centers"].oindex[sel]) if len(sel) else np.zeros((0, 2))
    mean = np.asarray(latents.arrays["mean"].oindex[sel]) if len(sel) else np.zeros((0, len(names)))
    lab = np.asarray(labels.arrays["labels"].oindex[sel]) if len(sel) else np.zeros(0, np.int64)
    figs: list[tuple[str, Path]] = []
    fig = Figure(figsize=(6, 6), layout="tight")
    ax = fig.subplots()
    ax.imshow(img, cmap="gray")
    ax.scatter(centers[:, 1], centers[:, 0], s=6, c="tab:red", linewidths=0)
    ax.set_title(f"frame 0 of {stack.shape[0]}, {len(sel)} patches")
    figs.append(("Input (frame 0) with patch centres", save_figure(fig, folder / "image.png")))
    if len(sel):
        lm = LatentMaps(names=names, values=mean, std=np.zeros_like(mean), centers=centers,
                        frames=np.zeros(len(sel), np.int64), image_shape=(h, w),
                        n_frames=int(stack.shape[0]))
        figs.append(("Latent maps of frame 0", save_figure(latent_maps_figure(lm, image=img),
                                                             folder / "latent_maps.png")))
        raster = np.asarray(maps[0]).astype(np.float64)
        raster[raster == 255] = np.nan
        fig = Figure(figsize=(6, 6), layout="tight")
        plot_labels(fig.subplots(), centers, lab, image=img, label_raster=raster)
        figs.append(("Classes of frame 0", save_figure(fig, folder / "labels.png")))
    return figs

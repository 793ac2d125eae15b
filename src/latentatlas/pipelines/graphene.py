"""Graphene: atoms -> rings -> per-atom ring labels -> sub-images -> a class-aware VAE.

The ring topology around each atom (:mod:`latentatlas.descriptors.rings`) labels it without a
human: pristine three-hexagon atoms, atoms on pentagons and heptagons of Stone-Wales defects and
grain boundaries, atoms at holes. Those labels then drive one of the class-aware VAEs, all with
rotation (and translation) latents so that the classes and content latents do not have to
encode the orientation of the local environment:

- ``ssvae`` (registry ``ssrvae``): semi-supervised; a stratified ``labelled_fraction`` of the
  ring labels is given, the classifier q(y | x) predicts the rest. Scored on the atoms whose
  label was hidden.
- ``jvae`` (registry ``jrvae``): no labels; its discrete classes are matched to the ring labels
  by the Hungarian algorithm before scoring (every atom is unlabelled, so all are scored).
- ``cvae`` (registry ``cvae`` with rotation and translation): the decoder is conditioned on the
  ring label of every atom. It has no classifier; its "prediction" is the class whose decoding
  of the atom's latents reconstructs the patch best (a generative classifier), reported for
  completeness, not as a fair score (the encoder saw the labels only through training).

Images are resampled so that one C-C bond spans ``bond_pixels`` pixels (patch sizes, and so
training time, are then the same for a 4 nm frame of 512 pixels and a generated one);
coordinates in the results are in the pixels of the input image.

``analyze_graphene`` is the Python entry point; ``latentatlas graphene`` is a thin shell over it.
Coordinates files of the AICrystallographer AtomNet data (``*-coord.npy``) are pickled dicts
``{0: (n, 3) array}``; this module never unpickles. Convert one once, in a session where the
file is trusted::

    coords = np.load("G-GrainBoundary-4nm-coord.npy", allow_pickle=True)[()][0]
    np.save("G-GrainBoundary-4nm-xyc.npy", coords)        # a plain (n, 3) array
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from latentatlas._checks import check_array
from latentatlas._files import safe_text, write_atomic, write_text_atomic
from latentatlas._latent_names import DEFAULT_LATENT_DIM, content_columns
from latentatlas._repr import html_summary, text_summary
from latentatlas.analysis.abundance import AbundanceTable, latent_abundance
from latentatlas.analysis.classes import (
    confusion_matrix,
    match_labels,
    score_predictions,
    stratified_labels,
)
from latentatlas.analysis.labels import label_image
from latentatlas.datasets.graphene import ELEMENT_NAMES
from latentatlas.descriptors.patches import Patches
from latentatlas.descriptors.rings import (
    DEFAULT_RING_CLASSES,
    RingAnalysis,
    RingClassTable,
    analyze_rings,
    estimate_bond_length,
    ring_labelled_patches,
)
from latentatlas.io.calibration import Calibration, length_factor
from latentatlas.pipelines.outputs import OutputPlan, check_output, results_folder, save_signals

if TYPE_CHECKING:
    from latentatlas.models.registry import Capabilities

log = logging.getLogger(__name__)

__all__ = [
    "GRAPHENE_MODELS",
    "GrapheneConfig",
    "GrapheneResult",
    "analyze_graphene",
    "example_graphene",
    "load_coords",
    "score_predictions",
    "stratified_labels",
]

#: User-facing model names -> registry names (all with rotation and translation latents).
GRAPHENE_MODELS: dict[str, str] = {"ssvae": "ssrvae", "jvae": "jrvae", "cvae": "cvae"}
_ATOM_METHODS = ("peaks", "log", "dcnn")
#: C-C bond length (nm): the generated example sheet is calibrated with it
_BOND_NM = 0.142


@dataclass(frozen=True)
class GrapheneConfig:
    """Every choice of a graphene run (saved in the results and ``config.json``).

    model: ``ssvae``, ``jvae`` or ``cvae`` (see the module docstring).
    window: patch side in resampled pixels (None: about 4.8 bond lengths, so the patch holds
        the three rings around the atom and a little of their surroundings; 4 bond lengths
        gave 0.88 instead of 0.90 accuracy on ``example:graphene``).
    bond_pixels: resample the image so a C-C bond spans this many pixels (None: keep it).
    labelled_fraction: fraction of the ring labels the semi-supervised VAE sees, drawn per
        class (at least one atom of every class with two or more atoms).
    label_oversampling: the labelled atoms are repeated until they make about this fraction of
        each epoch, so every batch carries labels (``SSVAE.fit``'s ``labelled_fraction``).
    alpha: weight of the labelled atoms' cross-entropy in the semi-supervised VAE. The model's
        default (50) let the classifier collapse onto the majority class on the real
        grain-boundary frame (4 minority classes, 1-3 labelled atoms each); 1000 does not
        (benchmarks/RESULTS.md).
    augment: the semi-supervised VAE also trains on 11 symmetry copies of each labelled patch
        (rotations by multiples of 60 degrees and mirrors, :func:`_symmetry_copies`), which keep
        its ring label: 12 times the labels for free, which matters because the classifier
        q(y | x) itself has no rotation latent.
    tta: the class probabilities of ssvae and jvae are averaged over the 12 symmetry copies
        of each patch (test-time augmentation with the same symmetries).
    epochs, batch_size, lr, latent_dim, hidden, encoder, decoder: model and training.
    atoms: atom finder when no coordinates are given (``dcnn``: the DCNNs trained on
        low-dose graphene, ``find_graphene_atoms``, which also tell Si from C: their element
        classes become ``elements``; ``peaks``; ``log``). On a length-calibrated image the
        finder is given the C-C bond (0.142 nm) in pixels instead of estimating the spacing.
    cutoff: bond cut-off in input pixels (None: estimated). border_rings: see ``find_rings``.
    normalize: patch normalisation (``image``, ``patch``, ``none``).
    seed: for the labelled subset, the model and training.
    model_options: further config fields of the registered model.
    """

    model: str = "ssvae"
    window: int | None = None
    bond_pixels: float | None = 5.0
    labelled_fraction: float = 0.1
    label_oversampling: float = 0.5
    alpha: float = 1000.0
    augment: bool = True
    tta: bool = True
    epochs: int = 20
    batch_size: int = 64
    lr: float = 2e-3
    latent_dim: int = DEFAULT_LATENT_DIM
    hidden: int = 128
    encoder: str = "conv"
    decoder: str = "transform"
    atoms: str = "dcnn"
    cutoff: float | None = None
    border_rings: str = "keep"
    normalize: str = "image"
    seed: int = 0
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in GRAPHENE_MODELS:
            raise ValueError(f"model must be one of {sorted(GRAPHENE_MODELS)}, got {self.model!r}")
        if self.window is not None and self.window < 8:
            raise ValueError(f"window must be >= 8 pixels (or None for 4 bond lengths), got "
                             f"{self.window}")
        if self.bond_pixels is not None and not 2.0 <= self.bond_pixels <= 64.0:
            raise ValueError(f"bond_pixels must be in [2, 64] pixels per C-C bond (or None to "
                             f"keep the image scale), got {self.bond_pixels}")
        if not 0 < self.labelled_fraction < 1:
            raise ValueError(f"labelled_fraction must be in (0, 1), got {self.labelled_fraction}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0 < self.label_oversampling < 1:
            raise ValueError(f"label_oversampling must be in (0, 1), got "
                             f"{self.label_oversampling}")
        if self.epochs < 1 or self.batch_size < 1 or self.latent_dim < 1:
            raise ValueError(f"epochs, batch_size and latent_dim must be >= 1, got "
                             f"{self.epochs}, {self.batch_size}, {self.latent_dim}")
        if self.atoms not in _ATOM_METHODS:
            raise ValueError(f"atoms must be one of {_ATOM_METHODS}, got {self.atoms!r}")
        if self.cutoff is not None and not self.cutoff > 0:
            raise ValueError(f"cutoff must be > 0 pixels or None, got {self.cutoff}")
        if self.border_rings not in ("keep", "drop"):
            raise ValueError(f"border_rings must be 'keep' or 'drop', got {self.border_rings!r}")
        if self.normalize not in ("image", "patch", "none"):
            raise ValueError(f"normalize must be 'image', 'patch' or 'none', got "
                             f"{self.normalize!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class GrapheneResult:
    """What :func:`analyze_graphene` produced (also written to ``out`` when given).

    image: ``(h, w)`` the input image. coords: ``(n, 2)`` atoms (row, col) in input pixels;
    elements: ``(n,)`` element classes, indices into ``element_names`` (C = 0, Si = 1: from
    the graphene atom finder, the given coords' third column or the generated sample; all 0
    when unknown). rings: the ring analysis.
    patches: the sub-images (resampled pixels) of the atoms kept (``patches.index`` into
    coords). ring_labels: ``(m,)`` ring label of each patch. labelled: ``(m,)`` True where the
    model saw the label. predictions: ``(m,)`` predicted ring label (Hungarian-matched for
    jvae). probabilities: ``(m, k)`` class probabilities (None for cvae). latent_names,
    latents, latents_std: ``(m, d)`` posterior means and standard deviations. scores:
    accuracy, balanced accuracy, majority baseline, per-class recall (on ``scored`` atoms).
    scale: resampled pixels per input pixel. class_ids: ``(k,)`` the ring label of each of the
    model's classes (-1: a joint-VAE class matched to no ring label).
    """

    config: GrapheneConfig
    image: np.ndarray
    coords: np.ndarray
    elements: np.ndarray
    rings: RingAnalysis
    patches: Patches
    ring_labels: np.ndarray
    labelled: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray | None
    latent_names: list[str]
    latents: np.ndarray
    latents_std: np.ndarray
    model: Any
    scale: float
    class_ids: np.ndarray
    scores: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None
    calibration: Calibration = field(default_factory=Calibration)
    element_names: tuple[str, ...] = ELEMENT_NAMES

    def _summary(self) -> dict[str, Any]:
        s = self.scores
        return {"model": self.config.model, "image": f"{self.image.shape[0]} x "
                f"{self.image.shape[1]} px, {self.calibration.describe()}",
                "atoms": len(self.coords), "elements": self.element_counts(),
                "rings": len(self.rings.rings),
                "patches": len(self.patches), "latents": self.latent_names,
                "accuracy": s.get("accuracy"), "balanced_accuracy": s.get("balanced_accuracy"),
                "majority_baseline": s.get("majority_baseline"), "out": self.out}

    def __repr__(self) -> str:
        return text_summary("GrapheneResult", self._summary())

    def _repr_html_(self) -> str:
        return html_summary("GrapheneResult", self._summary())

    def plot(self) -> dict[str, Any]:
        """The figures of the report as ``{name: matplotlib Figure}`` (maps calibrated)."""
        return {name: fig for name, (_, fig) in _figure_set(self).items()}

    def to_signals(self) -> dict[str, Any]:
        """Latent and predicted-label maps as calibrated HyperSpy signals (needs
        ``hyperspy``); see :func:`latentatlas.pipelines.signals.graphene_signal_dicts`."""
        from latentatlas.pipelines.signals import graphene_signal_dicts, to_signals

        return to_signals(graphene_signal_dicts(self))

    def element_counts(self) -> dict[str, int]:
        """Atoms of each element, e.g. ``{"C": 612, "Si": 3}`` (a class without a name, from
        given coords, as ``"class k"``)."""
        names = dict(enumerate(self.element_names))
        out = {name: 0 for name in self.element_names}
        for k, n in zip(*np.unique(self.elements, return_counts=True), strict=True):
            out[names.get(int(k), f"class {int(k)}")] = int(n)
        return out

    @property
    def table(self) -> RingClassTable:
        return self.rings.table

    @property
    def scored(self) -> np.ndarray:
        """``(m,)`` mask of the patches the scores are computed on (labels hidden from the model)."""
        return ~self.labelled

    @property
    def centers(self) -> np.ndarray:
        """``(m, 2)`` patch centres (row, col) in input pixels."""
        return self.coords[self.patches.index]

    def explore(self, **options: Any) -> Any:
        """The interactive explorer of this result in a Jupyter notebook."""
        from latentatlas.report import explore

        return explore(self, **options)

    def abundance(self) -> AbundanceTable:
        """Every latent's distribution in every ring label and its correlation ratio with
        the labels (the "latent abundance" hypothesis)."""
        return latent_abundance(self.latents, self.ring_labels, self.latent_names,
                                self.table.label_names)

    def label_image(self, which: str = "predictions") -> np.ndarray:
        """``predictions`` or ``ring_labels`` painted as discs on the input image ``(h, w)``
        (NaN off the atoms)."""
        values = {"predictions": self.predictions, "ring_labels": self.ring_labels}
        if which not in values:
            raise ValueError(f"which must be 'predictions' or 'ring_labels', got {which!r}")
        h, w = self.image.shape
        return label_image(values[which], self.centers, (h, w))


# ----------------------------------------------------------------------------------- input


def example_graphene(seed: int = 0, size: int = 160) -> Any:
    """The ``example:graphene`` sheet: Stone-Wales defects, 5-8-5 divacancies and Si atoms,
    5 pixels per bond, dense enough that about 40 % of the atoms with a full window sit on
    pentagons, heptagons or octagons (the pristine [6, 6, 6] class is then a majority of ~57 %).

    Returns a :class:`latentatlas.datasets.graphene.GrapheneSample`.
    """
    from latentatlas.datasets.graphene import make_graphene

    n = max(1, round(12 * (size / 160) ** 2))
    return make_graphene(shape=(size, size), pixel_size=0.2, stone_wales=n,
                         divacancies=max(1, n // 2), silicon=max(1, n // 6), min_separation=3.5,
                         rng=seed)


def load_coords(path: str | os.PathLike[str]) -> np.ndarray:
    """Atom coordinates from ``.npy`` (``(n, 2)`` row, col or ``(n, 3)`` row, col, class) or
    ``.npz`` (the array named ``coords``, or the only array). Never unpickles.

    The AtomNet ``*-coord.npy`` files are pickled dicts: convert them first (see the module
    docstring).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"coordinates file {p} does not exist")
    if p.suffix not in (".npy", ".npz"):
        raise ValueError(f"coordinates must be a .npy or .npz file, got {p.name}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(
            f"{p.name} holds Python objects (a pickle, e.g. the AtomNet *-coord.npy dicts); "
            "latentatlas does not unpickle. If you trust the file, convert it once: "
            "np.save('xyc.npy', np.load(path, allow_pickle=True)[()][0])"
        ) from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if "coords" in names:
                arr = loaded["coords"]
            elif len(names) == 1:
                arr = loaded[names[0]]
            else:
                raise ValueError(f"{p.name} holds arrays {names}; name the coordinates 'coords'")
    else:
        arr = loaded
    return _check_coords(arr, f"coordinates in {p.name}")


def _check_coords(coords: Any, name: str = "coords") -> np.ndarray:
    arr = check_array(coords, name, ndim=2, dtype=np.float64)
    if arr.shape[1] not in (2, 3):
        raise ValueError(f"{name} must be (n, 2) (row, col) or (n, 3) (row, col, class), got "
                         f"shape {arr.shape}")
    if len(arr) < 10:
        raise ValueError(f"{name} has {len(arr)} atoms; ring analysis needs at least 10")
    return arr


def _bond_in_pixels(calibration: Calibration) -> float | None:
    """The C-C bond (0.142 nm) in input pixels of a length-calibrated image (geometric mean
    of the row and column pixel sizes), None when the image is not calibrated in lengths."""
    factor = length_factor(calibration.units) if calibration.units else None
    if factor is None:
        return None
    pixel_nm = float(np.sqrt(calibration.scale[0] * calibration.scale[1])) * factor * 1e9
    return _BOND_NM / pixel_nm


def _load_image(source: Any) -> tuple[np.ndarray, str, Any, Calibration]:
    """``(h, w)`` float32 image, its name, the generated sample (for examples) or None, and
    the pixel size."""
    if isinstance(source, str) and source.startswith("example:"):
        if source != "example:graphene":
            raise ValueError(f"unknown example {source!r}; available: example:graphene")
        sample = example_graphene()
        px = 0.2 * _BOND_NM  # example_graphene draws 0.2 bond lengths per pixel
        return sample.image.astype(np.float32), source, sample, Calibration((px, px), units="nm")
    calibration = Calibration()
    if isinstance(source, (str, os.PathLike)) or hasattr(source, "axes_manager") or (
            hasattr(source, "axes") and hasattr(source, "data")):
        from latentatlas.io import load

        data = load(source)
        arr, name = np.asarray(data.data), str(source) if isinstance(
            source, (str, os.PathLike)) else (data.name or "signal")
        calibration = Calibration.from_axes([a for a in data.axes if a.size > 1][-2:])
    else:
        arr, name = np.asarray(source), "array"
    arr = arr.reshape([n for n in arr.shape if n != 1]) if arr.ndim > 2 else arr
    img = check_array(arr, "image", ndim=2).astype(np.float32)
    if min(img.shape) < 16:
        raise ValueError(f"image must be at least 16 x 16 pixels, got {img.shape}")
    return img, name, None, calibration


# ----------------------------------------------------------------------------------- run


def analyze_graphene(
    image_or_path: Any,
    coords: Any = None,
    model: str = "ssvae",
    window: int | None = None,
    labelled_fraction: float = 0.1,
    epochs: int = 20,
    out: str | Path | None = None,
    seed: int = 0,
    *,
    table: RingClassTable = DEFAULT_RING_CLASSES,
    progress: bool = False,
    overwrite: bool = False,
    figure_formats: Sequence[str] = (),
    **options: Any,
) -> GrapheneResult:
    """Ring-labelled class-aware VAE analysis of a graphene image.

    Parameters
    ----------
    image_or_path : ``(h, w)`` array, a file ``latentatlas.load`` reads, or ``example:graphene``
        (a generated defected sheet; its exact atoms are used unless ``coords`` is given).
    coords : ``(n, 2)`` (row, col) or ``(n, 3)`` (row, col, element class) atom positions in
        pixels, or a ``.npy``/``.npz`` file of them (:func:`load_coords`); None: found with
        ``latentatlas.descriptors.atoms.find_atoms`` (``atoms=`` option).
    model : ``ssvae``, ``jvae`` or ``cvae``.
    window : patch side in resampled pixels (None: about 4.8 bond lengths).
    labelled_fraction : fraction of ring labels the semi-supervised VAE sees.
    epochs : training epochs.
    out : folder for results.npz, config.json, figures, model and index.html; built under a
        temporary name and swapped in when complete (see :mod:`latentatlas.pipelines.outputs`:
        an existing folder that is not latentatlas's is refused unless ``overwrite``).
    table : the ring class table (labels 0 .. table.n_labels - 1).
    figure_formats : ``svg`` and/or ``pdf`` copies of every figure beside the PNGs.
    options : further :class:`GrapheneConfig` fields (bond_pixels, latent_dim, atoms, ...).
    """
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    cfg = GrapheneConfig(model=model, window=window, labelled_fraction=labelled_fraction,
                         epochs=epochs, seed=seed, **options)
    inputs = [os.fspath(p) for p in (image_or_path, coords) if isinstance(p, (str, os.PathLike))
              and not str(p).startswith("example:")]
    plan = None if out is None else check_output(out, inputs, overwrite)
    t = time.perf_counter()
    img, name, sample, calibration = _load_image(image_or_path)
    if coords is None and sample is not None:
        xyc = np.column_stack([sample.coords, sample.classes]).astype(np.float64)
    elif coords is None:
        from latentatlas.descriptors.atoms import find_atoms, find_graphene_atoms

        spacing = _bond_in_pixels(calibration)
        # the graphene finders label C = 0 and Si = 1 (the order of ELEMENT_NAMES); the
        # classical finders give class 0 for every atom
        found = (find_graphene_atoms(img, spacing=spacing) if cfg.atoms == "dcnn"
                 else find_atoms(img, method=cfg.atoms, spacing=spacing))
        if found.params["class_names"] not in (None, list(ELEMENT_NAMES)):
            raise ValueError(f"the atom finder's classes {found.params['class_names']} are not "
                             f"the elements {list(ELEMENT_NAMES)}")
        xyc = found.as_array()
        log.info("atom finder %s: %s (bond %s)", cfg.atoms,
                 dict(zip(ELEMENT_NAMES, np.bincount(found.classes, minlength=2).tolist(),
                          strict=False)),
                 "estimated" if spacing is None else f"{spacing:.2f} px from the calibration")
        if len(xyc) < 10:
            raise ValueError(f"the atom finder {cfg.atoms!r} found {len(xyc)} atoms; pass "
                             "coords= or try another atoms= method")
    elif isinstance(coords, (str, os.PathLike)):
        xyc = load_coords(coords)  # a file of coordinates
    else:
        xyc = _check_coords(coords)
    xy = xyc[:, :2]
    elements = xyc[:, 2].astype(np.int64) if xyc.shape[1] == 3 else np.zeros(len(xy), np.int64)
    h, w = img.shape
    outside = (xy[:, 0] < -0.5) | (xy[:, 1] < -0.5) | (xy[:, 0] > h - 0.5) | (xy[:, 1] > w - 0.5)
    if outside.mean() > 0.5:
        raise ValueError(
            f"{int(outside.sum())} of {len(xy)} atoms lie outside the {h} x {w} image; coords "
            "must be (row, col) in pixels of this image (swap the columns if they are (x, y))"
        )
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    rings = analyze_rings(xy, elements, cutoff=cfg.cutoff, table=table,
                          border_rings=cfg.border_rings)  # type: ignore[arg-type]
    timings["rings"] = time.perf_counter() - t
    log.info("rings: %s; labels %s", rings.size_counts(), rings.label_counts())

    # resample so a bond spans bond_pixels pixels: patch size and training time then do not
    # depend on the microscope's sampling
    bond = estimate_bond_length(xy)
    scale = 1.0 if cfg.bond_pixels is None else float(cfg.bond_pixels) / bond
    work = img
    if scale < 1.0:
        # anti-aliasing before shrinking: averages the pixel noise down instead of sampling it
        # (real frames at ~18 px per bond shrunk to 5 px carried the full per-pixel noise)
        work = ndimage.gaussian_filter(img, (1.0 / scale - 1.0) / 2.0)
    if scale != 1.0:
        work = ndimage.zoom(work, scale, order=1).astype(np.float32)
    win = cfg.window or int(2 * round(2.4 * bond * scale))
    if win >= min(work.shape):
        raise ValueError(f"window {win} px does not fit the {work.shape} (resampled) image; "
                         "use a smaller window or a larger image")
    t = time.perf_counter()
    patches = ring_labelled_patches(work, xy * scale, rings.labels, win, border="drop",
                                    normalize=cfg.normalize)  # type: ignore[arg-type]
    timings["patches"] = time.perf_counter() - t
    if len(patches) < 20:
        raise ValueError(f"only {len(patches)} atoms have a full {win} px window inside the "
                         "image; use a smaller window or a larger image")
    y = patches.classes.astype(np.int64)
    X = patches.as_model_input()
    log.info("%d patches of %d px (bond %.2f px after resampling), ring labels %s",
             len(X), win, bond * scale, np.bincount(y, minlength=table.n_labels).tolist())

    def extra(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _symmetry_copies(work, patches.centers[mask], y[mask], win, cfg.normalize)

    t = time.perf_counter()
    vae, labelled, class_ids = _fit(cfg, X, y, extra, progress)
    timings["train"] = time.perf_counter() - t
    t = time.perf_counter()
    lat = vae.encode(X)
    copies = (extra(np.ones(len(X), bool))[0] if cfg.tta and _capabilities(cfg).has_classes
              else None)
    predictions, proba = _predict(cfg, vae, X, class_ids, table.n_labels, copies)
    timings["predict"] = time.perf_counter() - t

    result = GrapheneResult(
        config=cfg, image=img, coords=xy, elements=elements, rings=rings, patches=patches,
        ring_labels=y, labelled=labelled, predictions=predictions, probabilities=proba,
        latent_names=list(lat.names), latents=np.asarray(lat.mean), latents_std=np.asarray(lat.std),
        model=vae, scale=scale, class_ids=class_ids, timings=timings, calibration=calibration,
    )
    scored = result.scored
    result.scores = score_predictions(y[scored], predictions[scored], table.label_names)
    result.scores["n_labelled"] = int(labelled.sum())
    log.info("accuracy %.3f (balanced %.3f, majority baseline %.3f) on %d atoms",
             result.scores.get("accuracy", np.nan), result.scores.get("balanced_accuracy", np.nan),
             result.scores.get("majority_baseline", np.nan), int(scored.sum()))
    if plan is not None:
        t = time.perf_counter()
        result.out = _write_run(result, name, plan, inputs, tuple(figure_formats))
        timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_all
    return result


def _capabilities(cfg: GrapheneConfig) -> Capabilities:
    """The capabilities of the registered family behind ``cfg.model``."""
    from latentatlas.models.registry import capabilities

    return capabilities(GRAPHENE_MODELS[cfg.model])


def _fit(cfg: GrapheneConfig, X: np.ndarray, y: np.ndarray, extra: Any,
         progress: bool) -> tuple[Any, np.ndarray, np.ndarray]:
    """Build and train the model. Returns it, the mask of labels it saw and ``class_ids``: the
    ring label of each of the model's classes (-1: none).

    extra: ``callable(mask) -> (patches, labels)`` giving the symmetry copies of the masked
    patches (used for the labelled atoms of the semi-supervised VAE when ``augment``).
    """
    from latentatlas.models import get_model

    common: dict[str, Any] = dict(latent_dim=cfg.latent_dim, hidden=cfg.hidden,
                                  encoder=cfg.encoder, decoder=cfg.decoder, rotation=True,
                                  translation=True, seed=cfg.seed)
    common.update(cfg.model_options)
    train: dict[str, Any] = dict(epochs=cfg.epochs, batch_size=min(cfg.batch_size, len(X)),
                                 lr=cfg.lr, seed=cfg.seed, progress=progress)
    name = GRAPHENE_MODELS[cfg.model]
    # the models get only the ring labels present (compact 0..k-1): fewer classes to
    # enumerate, and no class the data cannot teach
    present = np.unique(y)
    compact = np.searchsorted(present, y)
    n_classes = max(2, len(present))
    class_ids = np.full(n_classes, -1, np.int64)
    class_ids[: len(present)] = present
    caps = _capabilities(cfg)
    if caps.needs_labels and caps.has_classes:  # semi-supervised: a few labels, classes predicted
        labelled = stratified_labels(y, cfg.labelled_fraction, cfg.seed)
        train_x, train_y = X, np.where(labelled, compact, -1)
        if cfg.augment:
            ax, ay = extra(labelled)
            train_x = np.concatenate([X, ax])
            train_y = np.concatenate([train_y, np.searchsorted(present, ay)])
        vae = get_model(name, X.shape[1:], n_classes=n_classes,
                        **{"alpha": cfg.alpha, **common})
        vae.fit(train_x, train_y, labelled_fraction=cfg.label_oversampling, **train)
    elif caps.has_classes:  # unsupervised classes, matched to the ring labels afterwards
        labelled = np.zeros(len(y), bool)
        vae = get_model(name, X.shape[1:], discrete=(n_classes,), **common)
        vae.fit(X, **train)
        raw = vae.predict(X)
        mapping = match_labels(y, raw)
        class_ids = np.array([mapping.get(c, -1) for c in range(n_classes)], np.int64)
    else:
        # takes_condition: the decoder sees every label; scores are reported on all atoms (see
        # the module docstring)
        labelled = np.zeros(len(y), bool)
        vae = get_model(name, X.shape[1:], n_classes=n_classes, **common)
        vae.fit(X, compact, **train)
    return vae, labelled, class_ids


def _symmetry_copies(image: np.ndarray, centers: np.ndarray, labels: np.ndarray, window: int,
                     normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """The 11 other copies of each atom's patch under the symmetries of a graphene lattice
    seen from an atom or a hexagon (rotations by multiples of 60 degrees, and mirrors): they
    keep the ring label and look like the patches of the other sublattice and defect
    orientations. centers: ``(k, 2)`` in pixels of ``image``. Returns ``(11 k, window,
    window)`` and ``(11 k,)``.
    """
    big = int(np.ceil(window * np.sqrt(2))) + 2
    big += 1 - big % 2  # odd, so the rotation centre is the atom's pixel
    src = ring_labelled_patches(image, centers, labels, big, border="pad",
                                normalize=normalize)  # type: ignore[arg-type]
    p = src.data[:, 0]
    lo = big // 2 - window // 2
    out = []
    for mirror in (False, True):
        q = p[..., ::-1] if mirror else p
        for k in range(6):
            if k == 0 and not mirror:
                continue
            r = ndimage.rotate(q, 60.0 * k, axes=(-2, -1), reshape=False, order=1, mode="nearest")
            out.append(r[:, lo : lo + window, lo : lo + window])
    return (np.ascontiguousarray(np.concatenate(out), dtype=np.float32),
            np.tile(src.classes, len(out)))


def _predict(cfg: GrapheneConfig, vae: Any, X: np.ndarray, class_ids: np.ndarray,
             n_labels: int, copies: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted ring labels ``(m,)`` (-1: an unmatched joint-VAE class) and probabilities over
    the ring labels ``(m, n_labels)`` (None for cvae). copies: ``(11 m, w, w)`` symmetry copies
    of X stacked by symmetry (:func:`_symmetry_copies`); their probabilities are averaged in."""
    if _capabilities(cfg).has_classes:
        proba_model = vae.predict_proba(X)
        if copies is not None:
            extra_p = vae.predict_proba(copies).reshape(-1, len(X), proba_model.shape[1])
            proba_model = (proba_model + extra_p.sum(0)) / (1 + len(extra_p))
        pred = class_ids[proba_model.argmax(1)]
        proba = np.zeros((len(X), n_labels), np.float32)
        for c, k in enumerate(class_ids):
            if k >= 0:
                proba[:, k] += proba_model[:, c]
        return pred, proba
    # cvae: the class whose decoding of the atom's latents reconstructs the patch best
    flat = X.reshape(len(X), -1)
    err = np.full((len(X), len(class_ids)), np.inf)
    for c, k in enumerate(class_ids):
        if k >= 0:
            rec = vae.reconstruct(X, condition=np.full(len(X), c)).reshape(len(X), -1)
            err[:, c] = ((rec - flat) ** 2).mean(1)
    return class_ids[err.argmin(1)], None


# ----------------------------------------------------------------------------------- output


def save_results(path: Path, result: GrapheneResult) -> Path:
    """results.npz: coords, elements, ring labels, patch index, predictions, latents and the
    config as a JSON string (readable with ``np.load`` without pickles)."""
    config = json.dumps(_config_record(result), default=str)
    arrays: dict[str, np.ndarray] = {
        "coords": result.coords, "elements": result.elements,
        "atom_ring_labels": result.rings.labels, "atom_ring_sizes": result.rings.atom_ring_sizes,
        "bonds": result.rings.bonds, "index": result.patches.index,
        "class_ids": result.class_ids,
        "ring_labels": result.ring_labels, "labelled": result.labelled,
        "predictions": result.predictions, "latents_mean": result.latents,
        "latents_std": result.latents_std, "latent_names": np.asarray(result.latent_names),
        "label_names": np.asarray(result.table.label_names), "config": np.asarray(config),
    }
    if result.probabilities is not None:
        arrays["probabilities"] = result.probabilities

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]  # numpy stub quirk

    write_atomic(path, write)
    return path


def _config_record(result: GrapheneResult) -> dict[str, Any]:
    return {
        "graphene": result.config.to_dict(),
        "ring_classes": {"classes": [list(c) for c in result.table.classes],
                         "label_names": list(result.table.label_names),
                         "min_rings": result.table.min_rings},
        "bond_cutoff_px": result.rings.cutoff,
        "ring_size_counts": {str(k): v for k, v in result.rings.size_counts().items()},
        "atom_label_counts": result.rings.label_counts(),
        "element_counts": result.element_counts(),
        "scale": result.scale,
        "patches": result.patches.summary(),
        "latent_names": result.latent_names,
        "model": result.model.name,
        "scores": result.scores,
        "timings": result.timings,
    }


def _figure_set(result: GrapheneResult) -> dict[str, Any]:
    """name -> (caption, Figure) of every figure of a run (maps calibrated)."""
    from matplotlib.figure import Figure

    from latentatlas.analysis.classes import traversal_grid
    from latentatlas.plots.abundance import plot_abundance
    from latentatlas.plots.classes import plot_confusion, plot_latent_classes, plot_traversal
    from latentatlas.plots.maps import latent_label, plot_labels, plot_latent_scatter
    from latentatlas.plots.rings import plot_rings

    names = result.table.label_names
    cal = result.calibration
    figs: dict[str, Any] = {}

    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    plot_rings(fig.subplots(), result.coords, result.rings.rings, labels=result.rings.labels,
               label_names=names, bonds=result.rings.bonds, image=result.image, calibration=cal)
    figs["rings"] = ("Rings (coloured by size) and ring labels of every atom", fig)

    grid = traversal_grid(result.model, n=8, dim=0)
    row_names = [names[int(k)] if k >= 0 else f"class {c} (unmatched)"
                 for c, k in enumerate(result.class_ids)]
    fig = Figure(figsize=(7, 1.0 + 0.8 * len(grid)), layout="constrained")
    plot_traversal(fig.subplots(), grid, class_names=row_names, latent_name="z1")
    figs["traversals"] = ("Traversal manifolds: one row per class, z1 swept (canonical "
                          "orientation)", fig)

    if "angle" in result.latent_names:
        fig = Figure(figsize=(6.5, 5.5), layout="constrained")
        factor, label = latent_label("angle")
        ang = result.latents[:, result.latent_names.index("angle")] * factor
        plot_latent_scatter(fig.subplots(), result.centers, ang, image=result.image,
                            name="angle", calibration=cal, label=label)
        figs["angle"] = ("Angle latent at every atom (degrees)", fig)

    zcols = content_columns(result.latent_names)
    if zcols:
        dims = (zcols[0], zcols[1]) if len(zcols) > 1 else (zcols[0], zcols[0])
        if "angle" in result.latent_names and len(zcols) == 1:
            dims = (result.latent_names.index("angle"), zcols[0])
        fig = Figure(figsize=(6.5, 5), layout="constrained")
        plot_latent_classes(fig.subplots(), result.latents, result.ring_labels, dims=dims,
                            names=result.latent_names, class_names=list(names))
        figs["latent_classes"] = ("Content latents coloured by ring label", fig)

    fig = Figure(figsize=(1.6 * len(result.latent_names) + 3, 0.5 * len(names) + 2),
                 layout="tight")
    plot_abundance(fig.subplots(), result.abundance())
    figs["abundance"] = ("Latent abundance: each latent's mean in each ring label (in standard "
                         "deviations from its overall mean) and its correlation ratio eta with "
                         "the labels", fig)

    scored = result.scored
    # a joint-VAE class matched to no ring label (-1) gets its own last column
    pred = np.where(result.predictions < 0, len(names), result.predictions)
    counts = confusion_matrix(result.ring_labels[scored], pred[scored],
                              n_true=len(names), n_pred=len(names) + 1)
    keep_rows = np.flatnonzero(counts.sum(1) > 0)
    keep_cols = np.flatnonzero(counts.sum(0) > 0)
    col_names = [*names, "unmatched"]
    fig = Figure(figsize=(7, 6), layout="constrained")
    plot_confusion(fig.subplots(), counts[np.ix_(keep_rows, keep_cols)],
                   true_names=[names[k] for k in keep_rows],
                   pred_names=[col_names[k] for k in keep_cols])
    acc = result.scores.get("accuracy", float("nan"))
    figs["confusion"] = (f"Confusion matrix: ring labels (rows) vs {result.config.model} "
                         f"predictions on {int(scored.sum())} atoms whose label the model did "
                         f"not see (accuracy {acc:.3f})", fig)

    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    plot_labels(fig.subplots(), result.centers, pred, image=result.image, calibration=cal,
                class_names=col_names, title="predicted ring class")
    figs["labels"] = ("Labelled image: predicted ring class of every atom", fig)
    return figs


def _figures(result: GrapheneResult, folder: Path,
             formats: Sequence[str] = ()) -> list[tuple[str, Path]]:
    from latentatlas.plots.style import save_figure

    return [(caption, save_figure(fig, folder / f"{name}.png", formats=formats))
            for name, (caption, fig) in _figure_set(result).items()]


def _write_run(result: GrapheneResult, name: str, plan: OutputPlan, inputs: list[str],
               formats: tuple[str, ...] = ()) -> Path:
    from latentatlas.pipelines.signals import graphene_signal_dicts, save_signal_dicts
    from latentatlas.report import write_explorer, write_report

    name = safe_text(name)
    with results_folder(plan, "graphene", result.config.to_dict(), inputs) as tmp:
        save_results(tmp / "results.npz", result)
        record = {"source": name, **_config_record(result),
                  "calibration": result.calibration.to_dict()}
        write_text_atomic(tmp / "config.json", json.dumps(record, indent=2, default=safe_text))
        result.model.save(tmp / "model")
        save_signals(lambda f: save_signal_dicts(graphene_signal_dicts(result), f), tmp)
        figs = _figures(result, tmp, formats)
        s = result.scores
        summary: dict[str, Any] = {
            "atoms": len(result.coords),
            "elements": ", ".join(f"{n} {e}" for e, n in result.element_counts().items()),
            "rings": len(result.rings.rings), "patches": len(result.patches),
            "model": f"{result.config.model} ({result.model.name}), latents "
                     + ", ".join(result.latent_names),
        }
        for key in ("accuracy", "balanced_accuracy", "majority_baseline", "n_scored",
                    "n_labelled"):
            if key in s:
                summary[key.replace("_", " ")] = s[key]
        verdict = ""
        if {"accuracy", "balanced_accuracy", "majority_baseline"} <= set(s):
            present = len(np.unique(result.ring_labels[result.scored]))
            verdict = (f"{result.config.model}: accuracy {s['accuracy']:.3f}, balanced accuracy "
                       f"{s['balanced_accuracy']:.3f} against the ring labels; always "
                       f"predicting the majority label scores {s['majority_baseline']:.3f} and "
                       f"{1 / max(present, 1):.3f}.")
        tables: dict[str, dict[str, Any]] = {
            "Parameters": result.config.to_dict(),
            "Input": {"source": name, "shape": list(result.image.shape),
                      "atoms": len(result.coords), "patches": len(result.patches)},
            "Rings": {"ring sizes": record["ring_size_counts"],
                      "atom labels": record["atom_label_counts"]},
            "Scores against ring labels": result.scores,
            "Latent abundance by ring label (eta, Kruskal-Wallis p, class means)":
                result.abundance().as_dict(),
            "Timings (s)": result.timings,
        }
        write_report(tmp / "index.html", f"latentatlas graphene: {name}", figs, tables,
                     summary=summary, verdict=verdict, inputs=inputs,
                     command="latentatlas graphene",
                     calibration={"pixel size": result.calibration.describe(),
                                  "resampling": f"{result.scale:.4g} working pixels per input "
                                                "pixel"})
        write_explorer(tmp / "explorer.html", result)
    return plan.path

"""Explorer inputs from the result objects of the analyses (arrays in, arrays out).

``explorer_data(obj, **options)`` picks the adapter by type: :func:`from_analysis`
(``AnalysisResult``), :func:`from_graphene` (``GrapheneResult``), :func:`from_classify`
(``ClassifyResult``), :func:`from_unmix` (``UnmixResult``, with the cube). Walls have no
result object; :func:`from_walls` takes the pieces (image, walls, wall patches, their latents).

Every sample explorer carries baselines beside the model's values, computed on the same
patches: the first two principal components of the patch pixels and the patch mean and
standard deviation, so a structure in the latents can be checked against what plain statistics
already show.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from latentatlas.report.explorer import ExplorerData, SpectralExplorerData

log = logging.getLogger(__name__)

__all__ = [
    "explorer_data",
    "from_analysis",
    "from_classify",
    "from_graphene",
    "from_unmix",
    "from_walls",
    "patch_baselines",
]


def patch_baselines(patches: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Plain statistics of ``(n, p, p)`` (or ``(n, c, p, p)``) patches, each ``(n,)``:
    ``pca1``, ``pca2`` (principal-component scores of the pixels), ``patch_mean``,
    ``patch_std``."""
    from sklearn.decomposition import PCA

    flat = np.asarray(patches, dtype=np.float32).reshape(len(patches), -1)
    out = {"patch_mean": flat.mean(1), "patch_std": flat.std(1)}
    k = min(2, flat.shape[0] - 1, flat.shape[1])
    if k >= 1:
        solver = "randomized" if flat.shape[0] > 2000 else "full"
        scores = PCA(k, svd_solver=solver, random_state=seed).fit_transform(flat)
        out.update({f"pca{j + 1}": scores[:, j] for j in range(k)})
    return {k: out[k] for k in ("pca1", "pca2", "patch_mean", "patch_std") if k in out}


def _first_channel(x: np.ndarray, n: int) -> np.ndarray:
    """``(n, p, p)`` or ``(n, c, p, p)`` -> ``(n, p, p)``."""
    a = np.asarray(x).reshape(n, *np.asarray(x).shape[1:])
    return a[:, 0] if a.ndim == 4 else a


def _latent_columns(names: list[str], mean: np.ndarray, std: np.ndarray | None
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    values = {n: mean[:, i] for i, n in enumerate(names)}
    stds = {} if std is None else {n: std[:, i] for i, n in enumerate(names)
                                   if np.any(std[:, i] > 0)}
    return values, stds


def _tile_manifold(model: Any) -> np.ndarray | None:
    """The model's decoded manifold ``(rows, cols, h, w)`` for image models, else None."""
    if not hasattr(model, "manifold"):
        return None
    grid = np.asarray(model.manifold(n=8))
    if grid.ndim == 5:
        grid = grid[:, :, 0]
    return grid if grid.ndim == 4 else None


def from_analysis(result: Any, *, pixel_size: float | None = None, units: str = "px",
                  reconstructions: bool = True, title: str | None = None) -> ExplorerData:
    """Explorer inputs from an ``AnalysisResult`` (``latentatlas.pipelines.analyze.analyze``).

    Values: every latent (with its posterior std), the GMM ``class`` and its uncertainty
    ``class_uncertainty`` (1 - the largest class probability), the atom finder's classes when
    it found several (``atom_class``), the true class of generated examples (``true_class``,
    -1 where no true atom is within a quarter spacing) and the patch baselines.
    pixel_size, units: the calibration of the image (AnalysisResult keeps pixels only).
    reconstructions: decode every patch for the tooltip thumbnails (one pass of the model).
    """
    p, m, lab = result.patches, result.maps, result.labels
    values, stds = _latent_columns(list(m.names), np.asarray(m.values), np.asarray(m.std))
    values["class"] = lab.labels
    values["class_uncertainty"] = 1.0 - np.asarray(lab.probabilities).max(1)
    categorical = ["class"]
    finder = np.asarray(p.classes)
    if len(np.unique(finder[finder >= 0])) > 1:
        values["atom_class"] = finder
        categorical.append("atom_class")
    truth = getattr(result, "truth", None)
    if truth is not None and p.grid_shape is None and p.n_frames == 1:
        from scipy.spatial import cKDTree

        from latentatlas.analysis.latent_maps import typical_spacing

        d, idx = cKDTree(truth["positions"]).query(p.centers, k=1)
        ok = d <= 0.25 * typical_spacing(truth["positions"])
        values["true_class"] = np.where(ok, np.asarray(truth["classes"])[idx], -1)
        categorical.append("true_class")
    thumbs = p.data[:, 0]
    values.update(patch_baselines(p.data))
    recon = None
    if reconstructions:
        recon = _first_channel(result.model.reconstruct(p.as_model_input()), len(p))
    cfg = result.config
    return ExplorerData(
        frames=np.asarray(result.image)[:, 0], positions=p.centers, frame_index=p.frames,
        values=values, std=stds, categorical=tuple(categorical), patches=thumbs,
        reconstructions=recon, window=float(p.window), pixel_size=pixel_size or 1.0,
        units=units if pixel_size else "px", manifold=_tile_manifold(result.model),
        manifold_label="decoded manifold (z1 across, z2 down)",
        title=title or f"latentatlas analyze: {cfg.model}, {len(p)} patches of {p.window} px",
    )


def from_graphene(result: Any, *, pixel_size: float | None = None, units: str = "px",
                  reconstructions: bool = True, title: str | None = None) -> ExplorerData:
    """Explorer inputs from a ``GrapheneResult`` (``analyze_graphene``).

    Values: the latents (with std), ``ring_label`` (from the ring topology), ``prediction``
    (the model's class, -1 = a joint-VAE class matched to no label), ``labelled`` (1 where the
    model saw the label), ``uncertainty`` (1 - the largest class probability; not for cvae),
    ``element`` when the coordinates carried several, and the patch baselines. Patches are in
    the resampled pixels the model saw; positions are in input pixels.
    """
    p = result.patches
    values, stds = _latent_columns(list(result.latent_names), np.asarray(result.latents),
                                   np.asarray(result.latents_std))
    values["ring_label"] = result.ring_labels
    values["prediction"] = result.predictions
    values["labelled"] = result.labelled.astype(np.int64)
    categorical = ["prediction", "ring_label", "labelled"]
    if result.probabilities is not None:
        values["uncertainty"] = 1.0 - np.asarray(result.probabilities).max(1)
    elements = np.asarray(result.elements)[p.index]
    if len(np.unique(elements)) > 1:
        values["element"] = elements
        categorical.append("element")
    values.update(patch_baselines(p.data))
    recon = None
    if reconstructions:
        X = p.as_model_input()
        if result.config.model == "cvae":
            # the decoder needs each atom's class: the model's index of its ring label
            index = {int(k): c for c, k in enumerate(result.class_ids) if k >= 0}
            cond = np.array([index[int(y)] for y in result.ring_labels])
            recon = result.model.reconstruct(X, condition=cond)
        else:
            recon = result.model.reconstruct(X)
        recon = _first_channel(recon, len(p))
    manifold = None
    if hasattr(result.model, "traversal"):
        from latentatlas.analysis.classes import traversal_grid

        grid = traversal_grid(result.model, n=8, dim=0)
        manifold = grid[:, :, 0] if grid.ndim == 5 else grid
    names = result.table.label_names
    return ExplorerData(
        frames=np.asarray(result.image), positions=result.centers, values=values, std=stds,
        categorical=tuple(categorical), patches=p.data[:, 0], reconstructions=recon,
        window=float(p.window) / float(result.scale), pixel_size=pixel_size or 1.0,
        units=units if pixel_size else "px", manifold=manifold,
        manifold_label="traversals: one row per class, z1 across",
        title=title or (f"latentatlas graphene: {result.config.model}, {len(p)} atoms; ring "
                        "labels " + ", ".join(f"{k} = {n}" for k, n in enumerate(names))),
    )


def from_classify(result: Any, *, reconstructions: bool = True,
                  title: str | None = None) -> ExplorerData:
    """Explorer inputs from a ``ClassifyResult`` (``classify_defects``): one point per crop.

    The frame is a mosaic of the crops' unrotated patches (the model's pixel size), one tile
    per crop in crop order, each point at the centre of its tile. Values: the content latents
    (mean over the crop's views, with std), ``label`` (the folder's class, -1 none),
    ``prediction`` (the model's, -1 = a joint-VAE class matched to no label), ``labelled``
    (1 where the model saw the label), ``uncertainty`` (1 - the largest class probability),
    every baseline's prediction, and the patch baselines.
    """
    patches = np.asarray(result.data.canonical)
    n, w = len(patches), patches.shape[-1]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    mosaic = np.zeros((rows * w, cols * w), np.float32)
    tile_row, tile_col = np.divmod(np.arange(n), cols)
    for i, tile in enumerate(patches):
        r, c = tile_row[i] * w, tile_col[i] * w
        mosaic[r:r + w, c:c + w] = tile
    positions = np.stack([tile_row * w + (w - 1) / 2, tile_col * w + (w - 1) / 2],
                         axis=1).astype(np.float64)
    values, stds = _latent_columns(list(result.latent_names), np.asarray(result.latents),
                                   np.asarray(result.latents_std))
    values["label"] = np.asarray(result.data.crops.labels)
    values["prediction"] = np.asarray(result.predictions)
    values["labelled"] = np.asarray(result.labelled).astype(np.int64)
    values["uncertainty"] = 1.0 - np.asarray(result.probabilities).max(1)
    categorical = ["prediction", "label", "labelled"]
    for name, pred in result.baseline_predictions.items():
        values[name] = np.asarray(pred)
        categorical.append(name)
    values.update(patch_baselines(patches))
    recon = None
    if reconstructions:
        recon = _first_channel(result.model.reconstruct(patches[:, None]), n)
    names = result.data.crops.class_names
    return ExplorerData(
        frames=mosaic, positions=positions, values=values, std=stds,
        categorical=tuple(categorical), patches=patches, reconstructions=recon, window=float(w),
        pixel_size=float(result.config.pixel_size), units="pm",
        title=title or (f"latentatlas classify: {result.config.model}, {n} crops; classes "
                        + ", ".join(f"{k} = {c}" for k, c in enumerate(names))),
    )


def from_walls(image: Any, walls: Any, patches: Any, latents: Any, *, model: Any = None,
               pixel_size: float | None = None, units: str = "px",
               title: str | None = None) -> ExplorerData:
    """Explorer inputs for domain-wall patches.

    image : ``(h, w)`` or ``(t, h, w)`` the signal the walls were found in (a ``(t, c, h, w)``
        stack shows its first channel). walls : the ``Walls`` found (its domain map gives the
        physical descriptors of every patch: wall count, switching degree, curvature).
    patches : the ``Patches`` cut at wall pixels (``descriptors.walls.wall_patches``).
    latents : their ``Latents`` (``model.encode(patches.as_model_input())``); model : the
        trained model, for reconstruction thumbnails and the decoded manifold (optional).
    """
    from latentatlas.analysis.domains import patch_descriptors

    img = np.asarray(image, dtype=np.float32)
    frames = img[None] if img.ndim == 2 else (img[:, 0] if img.ndim == 4 else img)
    n = len(patches)
    values, stds = _latent_columns(list(latents.names), np.asarray(latents.mean),
                                   np.asarray(latents.std))
    if walls.domains is not None:
        desc = patch_descriptors(walls.domains, patches.centers, patches.window,
                                 frames=patches.frames, walls=walls.mask)
        values.update({k: np.asarray(v, dtype=np.float64) for k, v in desc.items()})
    values.update(patch_baselines(patches.data))
    recon = None if model is None else _first_channel(
        model.reconstruct(patches.as_model_input()), n)
    return ExplorerData(
        frames=frames, positions=patches.centers, frame_index=patches.frames, values=values,
        std=stds, patches=patches.data[:, 0], reconstructions=recon,
        window=float(patches.window), pixel_size=pixel_size or 1.0,
        units=units if pixel_size else "px",
        manifold=None if model is None else _tile_manifold(model),
        manifold_label="decoded manifold (z1 across, z2 down)",
        title=title or f"latentatlas walls: {walls.method} walls, {n} wall patches",
    )


def from_unmix(result: Any, cube: Any, axis: Any = None, *,
               title: str | None = None) -> SpectralExplorerData:
    """Explorer inputs from an ``UnmixResult`` and the cube it was computed from.

    cube : the ``(ny, nx, channels)`` array or loaded Dataset given to ``unmix``; the run's
        crop and binning are applied again (axis: the spectral axis given to ``unmix``, if
        any). Linear methods (pca, nmf, blu) show each component's contribution and the
        reconstruction; clustering methods show the labels and the cluster mean as the
        reconstruction; embeddings show their maps and the spectra only.
    """
    from latentatlas.spectral.preprocessing import bin_spatial, crop_channels
    from latentatlas.spectral.unmix import _energy_axis

    carried = None
    if hasattr(cube, "data") and not isinstance(cube, np.ndarray):
        axes = list(getattr(cube, "axes", None) or [])
        carried = axes[-1] if axes else None
        cube = cube.data
    arr = np.asarray(cube, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"cube must be (ny, nx, channels), got shape {arr.shape}")
    params = result.params
    energy, _, _ = _energy_axis(axis if axis is not None else carried, arr.shape[-1])
    if params.get("crop") is not None:
        arr, energy = crop_channels(arr, energy, *params["crop"])
    if params.get("bin", 1) != 1:
        arr = bin_spatial(arr, params["bin"])
    ny, nx = result.spatial_shape
    if arr.shape != (ny, nx, len(result.energy)):
        raise ValueError(f"after the run's crop and binning the cube is {arr.shape}, but the "
                         f"result is {(ny, nx, len(result.energy))}: pass the cube (and axis) "
                         "that were given to unmix")
    maps: dict[str, np.ndarray] = {}
    categorical: list[str] = []
    components = loadings = offset = None
    names: list[str] | None = None
    if result.labels is not None:
        labels = np.asarray(result.labels)
        maps["labels"] = labels.astype(np.float32)
        categorical.append("labels")
        if result.cluster_means is not None and len(result.cluster_means):
            k = len(result.cluster_means)
            components = np.asarray(result.cluster_means, dtype=np.float32)
            loadings = (labels[..., None] == np.arange(k)).astype(np.float32)
            names = [f"cluster {j}" for j in range(k)]
    elif result.loadings is not None:
        load = np.asarray(result.loadings, dtype=np.float32)
        prefix = "PC" if result.method == "pca" else "c"
        names = [f"{prefix}{j + 1}" for j in range(load.shape[-1])]
        maps.update({n: load[..., j] for j, n in enumerate(names)})
        reweighted = params.get("poisson") or params.get("scale")
        centred = result.method == "pca" and params.get("estimator", {}).get("center", True)
        if result.components is not None and not (centred and reweighted):
            # the components are in the units of the cube (or of the cube minus an offset)
            components, loadings = np.asarray(result.components, dtype=np.float32), load
            offset = np.zeros(arr.shape[-1], np.float32) + float(params.get("offset") or 0.0)
            if centred:
                offset = offset + np.asarray(result.extras["mean"], dtype=np.float32)
        elif result.components is not None:
            log.info("%s on reweighted spectra: components are not in the cube's units, so the "
                     "explorer shows maps and spectra without contributions", result.method)
    data = SpectralExplorerData(
        spectra=arr, energy=np.asarray(result.energy), maps=maps, components=components,
        loadings=loadings, component_names=names, offset=offset,
        categorical=tuple(categorical),
        energy_label=f"{result.energy_name} ({result.energy_units})" if result.energy_units
        else result.energy_name,
        pixel_size=result.pixel_size or 1.0, units=result.spatial_units,
        title=title or f"latentatlas unmix: {result.method}, k = {result.n_components}",
    )
    if components is not None and loadings is not None:
        rec = loadings @ components + (0.0 if offset is None else offset)
        err = np.linalg.norm(arr - rec, axis=-1) / np.maximum(np.linalg.norm(arr, axis=-1),
                                                              1e-12)
        data.maps["relative residual"] = err.astype(np.float32)
    return data


def explorer_data(obj: Any, **options: Any) -> ExplorerData | SpectralExplorerData:
    """Explorer inputs from a result object, by its type (see the module docstring)."""
    # by name, not isinstance: the result classes live in layers that import this one
    kind = type(obj).__name__
    if kind == "AnalysisResult":
        return from_analysis(obj, **options)
    if kind == "GrapheneResult":
        return from_graphene(obj, **options)
    if kind == "ClassifyResult":
        return from_classify(obj, **options)
    if kind == "UnmixResult":
        if "cube" not in options:
            raise ValueError("an UnmixResult holds no spectra: pass cube= (the cube given to "
                             "unmix) to explore it")
        return from_unmix(obj, **options)
    raise TypeError(f"no explorer adapter for {kind}; build an ExplorerData (or "
                    "SpectralExplorerData) from its arrays, or use from_walls for walls")

"""``unmix``: one call from a cube ``(ny, nx, channels)`` to an :class:`UnmixResult`.

Methods are registered by name in ``METHODS`` (no chains of ifs); each runner takes the
preprocessed spectra ``X (n, channels)`` and returns a :class:`MethodOutput`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from latentatlas._checks import check_array
from latentatlas.io.calibration import Calibration
from latentatlas.io.dataset import Axis
from latentatlas.spectral._blocks import BLOCK_BYTES
from latentatlas.spectral.blu import BayesianLinearUnmixing
from latentatlas.spectral.clustering import KMeans
from latentatlas.spectral.decomposition import NMF, PCA
from latentatlas.spectral.neural import SOM, SpectralAutoencoder
from latentatlas.spectral.outofcore import ChunkedKMeans, ChunkedNMF, IncrementalPCA
from latentatlas.spectral.preprocessing import (
    bin_spatial,
    crop_channels,
    poisson_normalize,
    poisson_unnormalize,
)
from latentatlas.spectral.result import UnmixResult

__all__ = ["METHODS", "MethodOutput", "OUT_OF_CORE_METHODS", "list_methods", "register_method",
           "unmix"]

logger = logging.getLogger(__name__)


@dataclass
class MethodOutput:
    """What a method runner returns; arrays are per spectrum (n = ny * nx)."""

    components: np.ndarray | None = None  # (k, channels)
    scores: np.ndarray | None = None  # (n, k)
    labels: np.ndarray | None = None  # (n,)
    # (n, channels) reconstruction, or a function giving the rows of a slice of it, so that
    # the error of a large cube is computed a block at a time without a second cube in memory
    reconstruction: np.ndarray | Callable[[slice], np.ndarray] | None = None
    explained_variance: np.ndarray | None = None
    explained_variance_ratio: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    linear: bool = False  # scores @ components reconstructs X (for the Poisson back-map)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """Everything a runner needs beyond the data."""

    n_components: int
    random_state: int | None
    device: str
    progress: bool
    options: dict[str, Any]
    block_bytes: int = BLOCK_BYTES


#: methods that run on a lazy (Dask) cube, one block of spectra in memory at a time
OUT_OF_CORE_METHODS = ("kmeans", "nmf", "pca")


def _is_lazy(X: Any) -> bool:
    return type(X).__module__.startswith("dask.")


Runner = Callable[[np.ndarray, RunContext], MethodOutput]
METHODS: dict[str, Runner] = {}
_NEEDS_NONNEGATIVE = {"nmf", "blu"}


def register_method(name: str) -> Callable[[Runner], Runner]:
    """Decorator registering a runner under ``name`` for :func:`unmix`."""

    def deco(fn: Runner) -> Runner:
        METHODS[name] = fn
        return fn

    return deco


def list_methods() -> list[str]:
    """Names accepted by ``unmix(..., method=...)``."""
    return sorted(METHODS)


def _pop(opts: dict[str, Any], key: str, default: Any) -> Any:
    return opts.pop(key, default)


def _reject_unknown(method: str, opts: dict[str, Any]) -> None:
    if opts:
        raise ValueError(
            f"unmix(method={method!r}) got unknown options {sorted(opts)}; see the estimator's "
            "docstring for the accepted ones"
        )


def _pca_scores(X: np.ndarray, n: int, ctx: RunContext) -> tuple[np.ndarray, int]:
    """PCA scores used as features by clustering and manifold methods."""
    k = max(1, min(n, X.shape[0], X.shape[1]))
    pca = PCA(k, random_state=ctx.random_state, device=ctx.device)
    return pca.fit_transform(X).astype(np.float64), k


@register_method("pca")
def _run_pca(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    center = _pop(opts, "center", True)
    est: PCA | IncrementalPCA
    if _is_lazy(X):
        # exact PCA from the scatter matrix summed block by block; the solver does not apply
        opts.pop("solver", None)
        est = IncrementalPCA(ctx.n_components, center=center, block_bytes=ctx.block_bytes,
                             device=ctx.device)
        _reject_unknown("pca", opts)
        scores = np.asarray(est.fit(X).transform(X))
    else:
        est = PCA(ctx.n_components, center=center, solver=_pop(opts, "solver", "auto"),
                  random_state=ctx.random_state, device=ctx.device)
        _reject_unknown("pca", opts)
        scores = est.fit_transform(X)
    return MethodOutput(
        components=est.components_, scores=scores,
        reconstruction=lambda sl: est.inverse_transform(scores[sl]),
        explained_variance=est.explained_variance_,
        explained_variance_ratio=est.explained_variance_ratio_,
        extras={"mean": est.mean_}, params=est.get_params(), linear=not est.center,
    )


@register_method("nmf")
def _run_nmf(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    est = NMF(ctx.n_components, solver=_pop(opts, "solver", "hals"), init=_pop(opts, "init", "spa"),
              max_iter=_pop(opts, "max_iter", 200), tol=_pop(opts, "tol", 1e-4),
              random_state=ctx.random_state, device=ctx.device)
    if _is_lazy(X):
        est = ChunkedNMF(**est.get_params(), block_bytes=ctx.block_bytes)
    _reject_unknown("nmf", opts)
    w = est.fit_transform(X)
    return MethodOutput(
        components=est.components_, scores=w, reconstruction=lambda sl: w[sl] @ est.components_,
        extras={"error_history": est.reconstruction_err_history_,
                "converged": np.asarray(est.converged_)},
        params=est.get_params(), linear=True,
    )


@register_method("blu")
def _run_blu(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    est = BayesianLinearUnmixing(
        ctx.n_components, n_samples=_pop(opts, "n_samples", 300), n_burn=_pop(opts, "n_burn", 200),
        prior_scale=_pop(opts, "prior_scale", 10.0), random_state=ctx.random_state,
        progress=ctx.progress)
    _reject_unknown("blu", opts)
    a = est.fit_transform(X)
    return MethodOutput(
        components=est.components_, scores=a, reconstruction=lambda sl: a[sl] @ est.components_,
        extras={"abundances_std": est.abundances_std_, "components_std": est.components_std_,
                "noise_variance_trace": est.noise_variance_trace_},
        params=est.get_params(), linear=True,
    )


@register_method("kmeans")
def _run_kmeans(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    est = KMeans(ctx.n_components, n_init=_pop(opts, "n_init", 1),
                 max_iter=_pop(opts, "max_iter", 100), random_state=ctx.random_state,
                 device=ctx.device)
    if _is_lazy(X):
        est = ChunkedKMeans(**est.get_params(), block_bytes=ctx.block_bytes)
    _reject_unknown("kmeans", opts)
    est.fit(X)
    labels = est.labels_
    centers = est.cluster_centers_
    return MethodOutput(labels=labels, scores=np.eye(ctx.n_components)[labels],
                        reconstruction=lambda sl: centers[labels[sl]],
                        extras={"inertia": np.asarray(est.inertia_)}, params=est.get_params())


@register_method("gmm")
def _run_gmm(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    from sklearn.mixture import GaussianMixture

    opts = dict(ctx.options)
    # as many PCA scores as clusters; one shared ("tied") covariance because the phases share
    # the instrument noise, and per-cluster covariances let a broad component swallow the
    # mixed pixels at region boundaries (ARI 0.78 instead of 0.99 on generated cubes)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", ctx.n_components), ctx)
    est = GaussianMixture(ctx.n_components, covariance_type=_pop(opts, "covariance_type", "tied"),
                          max_iter=_pop(opts, "max_iter", 100), random_state=ctx.random_state)
    _reject_unknown("gmm", opts)
    with warnings.catch_warnings():
        # non-convergence is reported in extras["converged"] and the log instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(feats)
    if not est.converged_:
        logger.warning("GMM did not converge in max_iter=%d; raise max_iter", est.max_iter)
    return MethodOutput(labels=est.predict(feats), scores=est.predict_proba(feats),
                        extras={"converged": np.asarray(est.converged_)},
                        params={**est.get_params(), "n_pca": n_pca})


def _auto_eps(feats: np.ndarray, min_samples: int, rng: np.random.Generator) -> float:
    """A DBSCAN radius from the data: the 90th percentile of the distance to the
    ``min_samples``-th neighbour (on at most 5000 points), the knee heuristic's usual place."""
    from sklearn.neighbors import NearestNeighbors

    sub = feats if len(feats) <= 5000 else feats[rng.choice(len(feats), 5000, replace=False)]
    nn = NearestNeighbors(n_neighbors=min(min_samples + 1, len(sub))).fit(sub)
    dist = nn.kneighbors(sub)[0][:, -1]
    return float(np.percentile(dist, 90)) or 1e-12


@register_method("dbscan")
def _run_dbscan(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    from sklearn.cluster import DBSCAN

    opts = dict(ctx.options)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", ctx.n_components), ctx)
    min_samples = _pop(opts, "min_samples", 10)
    eps = _pop(opts, "eps", None)
    if eps is None:
        eps = _auto_eps(feats, min_samples, np.random.default_rng(ctx.random_state))
    _reject_unknown("dbscan", opts)
    labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(feats)
    return MethodOutput(labels=labels, params={"eps": eps, "min_samples": min_samples,
                                               "n_pca": n_pca})


@register_method("hdbscan")
def _run_hdbscan(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    from sklearn.cluster import HDBSCAN

    opts = dict(ctx.options)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", ctx.n_components), ctx)
    mcs = _pop(opts, "min_cluster_size", max(5, len(X) // 100))
    _reject_unknown("hdbscan", opts)
    labels = HDBSCAN(min_cluster_size=mcs, copy=True).fit_predict(feats)
    return MethodOutput(labels=labels, params={"min_cluster_size": mcs, "n_pca": n_pca})


@register_method("isomap")
def _run_isomap(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    from sklearn.manifold import Isomap

    opts = dict(ctx.options)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", 10), ctx)
    max_fit = _pop(opts, "max_fit_samples", 2000)
    n_neighbors = _pop(opts, "n_neighbors", 10)
    _reject_unknown("isomap", opts)
    rng = np.random.default_rng(ctx.random_state)
    # the geodesic graph is O(n^2): fit on a subsample, map the rest out of sample
    fit_idx = (np.arange(len(feats)) if len(feats) <= max_fit
               else np.sort(rng.choice(len(feats), max_fit, replace=False)))
    est = Isomap(n_neighbors=min(n_neighbors, len(fit_idx) - 1), n_components=ctx.n_components)
    est.fit(feats[fit_idx])
    return MethodOutput(scores=est.transform(feats),
                        params={"n_neighbors": est.n_neighbors, "max_fit_samples": max_fit,
                                "n_fit": len(fit_idx), "n_pca": n_pca})


@register_method("umap")
def _run_umap(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    with warnings.catch_warnings():
        # umap announces its optional TensorFlow extra with an ImportWarning on import
        warnings.simplefilter("ignore", ImportWarning)
        import umap

    opts = dict(ctx.options)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", 10), ctx)
    params = {"n_neighbors": _pop(opts, "n_neighbors", 15), "min_dist": _pop(opts, "min_dist", 0.1),
              "n_epochs": _pop(opts, "n_epochs", None)}
    _reject_unknown("umap", opts)
    # n_jobs=1 with a seed keeps it reproducible (and quiet: umap warns otherwise)
    est = umap.UMAP(n_components=ctx.n_components, random_state=ctx.random_state, n_jobs=1,
                    **params)
    return MethodOutput(scores=est.fit_transform(feats), params={**params, "n_pca": n_pca})


@register_method("tsne")
def _run_tsne(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    from sklearn.manifold import TSNE

    opts = dict(ctx.options)
    feats, n_pca = _pca_scores(X, _pop(opts, "n_pca", 10), ctx)
    perplexity = min(_pop(opts, "perplexity", 30.0), (len(feats) - 1) / 3.0)
    max_iter = _pop(opts, "max_iter", 1000)
    _reject_unknown("tsne", opts)
    if ctx.n_components > 3:
        raise ValueError(
            "t-SNE (Barnes-Hut) embeds in at most 3 dimensions, "
            f"got n_components={ctx.n_components}"
        )
    est = TSNE(n_components=ctx.n_components, perplexity=perplexity, max_iter=max_iter,
               init="pca", random_state=ctx.random_state)
    return MethodOutput(scores=est.fit_transform(feats),
                        params={"perplexity": perplexity, "max_iter": max_iter, "n_pca": n_pca})


def _grid_for(k: int) -> tuple[int, int]:
    rows = max(d for d in range(1, int(np.sqrt(k)) + 1) if k % d == 0)
    return rows, k // rows


@register_method("som")
def _run_som(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    rows, cols = _pop(opts, "grid", _grid_for(ctx.n_components))
    est = SOM(rows, cols, n_epochs=_pop(opts, "n_epochs", 30), random_state=ctx.random_state,
              device=ctx.device)
    _reject_unknown("som", opts)
    est.fit(X)
    labels = est.labels_
    nodes = est.cluster_centers_
    return MethodOutput(labels=labels, scores=est.transform(X),
                        reconstruction=lambda sl: nodes[labels[sl]],
                        extras={"quantization_error_history": est.quantization_error_history_,
                                "node_spectra": est.cluster_centers_},
                        params=est.get_params())


@register_method("autoencoder")
def _run_autoencoder(X: np.ndarray, ctx: RunContext) -> MethodOutput:
    opts = dict(ctx.options)
    est = SpectralAutoencoder(
        ctx.n_components, n_hidden=_pop(opts, "n_hidden", 64), n_epochs=_pop(opts, "n_epochs", 30),
        batch_size=_pop(opts, "batch_size", 256),
        learning_rate=_pop(opts, "learning_rate", 3e-3),
        random_state=ctx.random_state, device=ctx.device)
    _reject_unknown("autoencoder", opts)
    z = est.fit_transform(X)
    return MethodOutput(scores=z, reconstruction=est.inverse_transform(z),
                        extras={"loss_history": est.loss_history_}, params=est.get_params())


def _vae_runner(name: str) -> Runner:
    """A runner training the core VAE family member ``name`` on 1-D spectra.

    Spectra are centred by the mean spectrum and divided by one global standard deviation
    (the Gaussian likelihood expects unit-scale data); reconstructions are mapped back.
    Loadings are the posterior means of all latents (pose first, e.g. the shift of a
    shift-VAE, then the content latents); their standard deviations go to extras.
    """

    def run(X: np.ndarray, ctx: RunContext) -> MethodOutput:
        from latentatlas.models import get_model

        opts = dict(ctx.options)
        train = {"epochs": _pop(opts, "epochs", 30), "batch_size": _pop(opts, "batch_size", 256),
                 "lr": _pop(opts, "lr", 1e-3)}
        model_opts = opts  # everything else configures the model (decoder, beta, ...)
        mean = X.mean(0)
        scale = float(X.std()) or 1.0
        Xs = ((X - mean) / scale).astype(np.float32)
        seed = 0 if ctx.random_state is None else int(ctx.random_state)
        model = get_model(name, input_shape=(X.shape[1],), latent_dim=ctx.n_components,
                          seed=seed, signal_dims=1, **model_opts)
        accelerator = "cuda" if ctx.device.startswith("cuda") else "cpu"
        model.fit(Xs, seed=seed, accelerator=accelerator, progress=ctx.progress, **train)
        lat = model.encode(Xs)
        recon = np.asarray(model.reconstruct(Xs)).reshape(X.shape) * scale + mean
        history = {k: np.asarray(v, dtype=np.float64) for k, v in model.history.items()}
        return MethodOutput(
            scores=lat.mean, reconstruction=recon,
            extras={"latent_std": lat.std,
                    **{"history_" + k.replace("/", "_"): v for k, v in history.items()
                       if v.ndim == 1}},
            params={"model": name, "latent_names": list(lat.names), **train, **model_opts},
        )

    return run


METHODS["vae"] = _vae_runner("vae")
METHODS["shiftvae"] = _vae_runner("shiftvae")


def _energy_axis(axis: Any, n_channels: int) -> tuple[np.ndarray, str, str]:
    """Axis values, name, units from None, an array, or an axis object (scale/offset/units)."""
    values: np.ndarray
    if axis is None:
        return np.arange(n_channels, dtype=np.float64), "Channel", ""
    if hasattr(axis, "scale") and hasattr(axis, "offset"):
        coords = getattr(axis, "values", None)  # non-uniform axes (e.g. triangular bias)
        if coords is not None and np.asarray(coords).shape == (n_channels,):
            values = np.asarray(coords, dtype=np.float64)
        else:
            values = float(axis.offset) + float(axis.scale) * np.arange(n_channels)
        return values, str(getattr(axis, "name", "") or "Energy"), str(getattr(axis, "units", "")
                                                                        or "")
    values = np.asarray(axis, dtype=np.float64)
    if values.shape != (n_channels,):
        raise ValueError(
            f"axis has shape {values.shape} but the cube has {n_channels} channels; pass one "
            "value per channel"
        )
    return values, "Energy", ""


def _as_cube(cube: Any) -> tuple[np.ndarray, Any, Calibration, tuple[int, ...]]:
    """Any accepted input -> ``(ny, nx, channels)`` cube, its spectral axis (or None), the
    maps' calibration and the navigation shape before flattening.

    Line scans ``(n, channels)`` become one row ``(1, n, channels)``; 4-D and higher
    ``(..., ny, nx, channels)`` stack their frames one below the other,
    ``(prod(...) * ny, nx, channels)``.
    """
    axes: list[Any] = []
    if hasattr(cube, "axes_manager"):  # a HyperSpy signal
        from latentatlas.io import load

        cube = load(cube)
    if hasattr(cube, "data") and not isinstance(cube, np.ndarray):
        axes = list(getattr(cube, "axes", None) or [])
        cube = cube.data
    lazy = _is_lazy(cube)
    arr = cube if lazy else np.asarray(cube)
    if arr.ndim < 2:
        raise ValueError(f"cube must be (ny, nx, channels), a line scan (n, channels) or "
                         f"(..., ny, nx, channels); got {arr.ndim} dimensions {arr.shape}")
    nav_shape = tuple(int(n) for n in arr.shape[:-1])
    calibration = Calibration()
    if len(axes) == arr.ndim:
        if arr.ndim == 2:
            # one row: a square pixel of the scan's step
            row = Axis("y", scale=axes[0].scale, units=axes[0].units)
            calibration = Calibration.from_axes([row, axes[0]], quiet=True)
        else:
            calibration = Calibration.from_axes(axes[-3:-1])
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim > 3:
        arr = arr.reshape(-1, arr.shape[-2], arr.shape[-1])
    if lazy:
        if np.dtype(arr.dtype).kind not in "biuf":
            raise ValueError(f"cube must be numeric, got dtype {arr.dtype}")
        cube3 = arr if arr.dtype == np.float64 else arr.astype(np.float32)
    else:
        cube3 = check_array(arr, "cube", ndim=3)
    return cube3, axes[-1] if axes else None, calibration, nav_shape


def unmix(
    cube: Any,
    method: str = "pca",
    n_components: int = 3,
    axis: Any = None,
    *,
    crop: tuple[float | None, float | None] | None = None,
    bin: int | tuple[int, int] = 1,
    poisson: bool = False,
    scale: Literal[False, "channel", "global"] = False,
    offset: Literal["min"] | float | None = None,
    random_state: int | None = 0,
    device: str = "cpu",
    progress: bool = False,
    block_bytes: int = BLOCK_BYTES,
    **options: Any,
) -> UnmixResult:
    """Decompose, cluster or embed the spectra of a cube.

    A lazy cube (a Dask array, or the dataset :func:`latentatlas.io.load_lazy` returns) is
    never read whole: the methods of ``OUT_OF_CORE_METHODS`` (``pca``, ``nmf``, ``kmeans``)
    run on it a block of ``block_bytes`` of spectra at a time, with the same results as in
    memory (see :mod:`latentatlas.spectral.outofcore`); the maps, ``(ny, nx, k)``, are held.

    Parameters
    ----------
    cube : (ny, nx, channels) array, a line scan (n, channels), or (..., ny, nx, channels)
        with the leading navigation axes flattened into the rows of the maps; or an object
        with ``.data`` (that array) and ``.axes`` (the last one is the spectral axis, with
        ``scale``, ``offset``, ``name``, ``units``; the two before it calibrate the maps), as
        returned by ``latentatlas.io.load``; or a HyperSpy signal (its energy axis and
        calibration are kept).
    method : one of :func:`list_methods`: ``pca``, ``nmf``, ``blu`` (linear); ``kmeans``,
        ``gmm``, ``dbscan``, ``hdbscan`` (clustering); ``isomap``, ``umap``, ``tsne``
        (manifold, on PCA scores); ``som``, ``autoencoder`` (neural); ``vae``, ``shiftvae``
        (the core VAE family on 1-D spectra; options ``epochs``, ``batch_size``, ``lr`` and
        any model config field).
    n_components : components, clusters, embedding dimensions or SOM nodes.
    axis : the spectral axis: None (channel index), an array ``(channels,)`` or an axis object.
        Overrides the axis carried by ``cube``.
    crop : ``(low, high)`` in axis units; channels outside are dropped first.
    bin : spatial binning factor (counts are summed).
    poisson : Poisson-normalise counts before the method (Keenan & Kotula); components and
        loadings of linear methods are mapped back to counts. Not for BLU (its abundances
        must stay on the simplex).
    scale : divide by the standard deviation of each channel (``"channel"``) or of the whole
        data (``"global"``) before the method, without centring (so NMF/BLU still see
        non-negative data; PCA centres by itself); components of linear methods are mapped
        back to the original units. Cannot be combined with ``poisson``.
    offset : ``"min"`` subtracts the global minimum (so NMF/BLU accept data with negative
        values, e.g. hysteresis loops), or a number to subtract; recorded in ``params``.
    random_state, device : passed to every estimator that takes them.
    progress : show progress bars on slow methods (BLU).
    block_bytes : bytes of spectra read at a time from a lazy cube.
    **options : method options (e.g. ``center=False`` for PCA, ``max_iter`` for NMF,
        ``n_samples``/``n_burn`` for BLU, ``n_pca`` for methods working on PCA scores).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list_methods()}")
    cube, carried_axis, calibration, nav_shape = _as_cube(cube)
    lazy = _is_lazy(cube)
    if lazy and method not in OUT_OF_CORE_METHODS:
        raise ValueError(
            f"method {method!r} needs the spectra in memory; on a lazy cube (or with a memory "
            f"budget) choose one of {', '.join(OUT_OF_CORE_METHODS)}, or load the cube whole "
            "(bin or crop it first if it does not fit)")
    ny, nx, c = cube.shape
    if not isinstance(n_components, (int, np.integer)) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    energy, e_name, e_units = _energy_axis(axis if axis is not None else carried_axis, c)
    if crop is not None:
        cube, energy = crop_channels(cube, energy, *crop)
        c = cube.shape[-1]
    if bin != 1:
        if len(nav_shape) != 2:
            raise ValueError(f"bin works on spectrum images (ny, nx, channels); this input's "
                             f"navigation shape is {nav_shape}")
        cube = _bin_lazy(cube, bin) if lazy else bin_spatial(cube, bin)
        ny, nx = cube.shape[:2]
        nav_shape = (ny, nx)
        calibration = calibration.binned(bin)
    if n_components > c and method in ("pca", "nmf", "blu", "autoencoder"):
        raise ValueError(
            f"n_components={n_components} is larger than the number of channels ({c}); "
            "ask for at most as many components as channels"
        )
    X = cube.reshape(ny * nx, c)
    applied_offset = 0.0
    if offset is not None:
        applied_offset = float(X.min()) if offset == "min" else float(offset)
        X = X - np.float32(applied_offset)
    # after offset="min" the data are non-negative by construction: no second pass
    if method in _NEEDS_NONNEGATIVE and offset != "min" and float(X.min()) < 0:
        raise ValueError(
            f"method {method!r} needs non-negative data but the cube has {int((X < 0).sum())} "
            f"negative values (minimum {float(X.min()):g}); pass offset='min' or use 'pca'"
        )
    g = h = None
    if scale is not False:
        if poisson:
            raise ValueError("pass either poisson=True or scale=..., not both: both reweight "
                             "the channels")
        if scale not in ("channel", "global"):
            raise ValueError(f"scale must be False, 'channel' or 'global', got {scale!r}")
        sd = np.asarray(X.std(0)) if scale == "channel" else np.full(X.shape[1],
                                                                     float(X.std()))
        sd = np.where(sd > 0, sd, 1.0).astype(np.float32)
        X = X / sd
        # reuse the Poisson back-map: components times the per-channel factor, loadings as is
        g, h = np.ones(X.shape[0], dtype=np.float32), sd
    elif poisson:
        if method == "blu":
            raise ValueError(
                "poisson=True is not supported for BLU: the per-pixel scaling would move the "
                "abundances off the simplex; run BLU on the counts"
            )
        if lazy:
            X, g, h = _poisson_normalize_lazy(X)
        else:
            Xp, g, h = poisson_normalize(X)
            X = Xp.astype(np.float32)
    ctx = RunContext(int(n_components), random_state, device, progress, dict(options),
                     block_bytes)
    logger.info("unmix: %s with k=%d on %d spectra x %d channels", method, n_components,
                X.shape[0], c)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # numba/umap emit deprecation chatter unrelated to the result
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(numba|umap)\b")
        out = METHODS[method](X, ctx)
    elapsed = time.perf_counter() - t0
    logger.info("unmix: %s finished in %.2f s", method, elapsed)

    rec_err = None
    if out.reconstruction is not None:
        rec_err = _relative_error(X, out.reconstruction)
    components, scores = out.components, out.scores
    if g is not None and h is not None and out.linear:
        scores, components = poisson_unnormalize(scores, components, g, h)
    cluster_means = None
    labels_map = None
    X_orig = cube.reshape(ny * nx, c)
    if out.labels is not None:
        labels = np.asarray(out.labels, dtype=np.int64)
        labels_map = labels.reshape(ny, nx)
        ids = np.unique(labels[labels >= 0])
        n_clusters = int(ids.max()) + 1 if ids.size else 0
        cluster_means = _cluster_means(X_orig, labels, n_clusters)
    params = {
        "method": method, "n_components": int(n_components), "crop": crop, "bin": bin,
        "poisson": poisson, "scale": scale,
        "offset": applied_offset if offset is not None else None,
        "random_state": random_state, "device": device, "options": options,
        "estimator": out.params, "elapsed_s": elapsed,
    }
    return UnmixResult(
        method=method, params=params, energy=energy, energy_name=e_name, energy_units=e_units,
        spatial_shape=(ny, nx), components=components,
        loadings=None if scores is None else np.asarray(scores).reshape(ny, nx, -1),
        reconstruction_error=rec_err, explained_variance=out.explained_variance,
        explained_variance_ratio=out.explained_variance_ratio, labels=labels_map,
        cluster_means=cluster_means,
        extras={k: _reshape_extra(v, ny, nx) for k, v in out.extras.items()},
        calibration=calibration, navigation_shape=nav_shape,
    )


def _relative_error(X: np.ndarray,
                    recon: np.ndarray | Callable[[slice], np.ndarray]) -> float:
    """``||X - X_hat|| / ||X||`` in float64, a block of rows at a time."""
    num = den = 0.0
    for sl in _row_slices(X):
        xb = np.asarray(X[sl], dtype=np.float64)
        rb = recon(sl) if callable(recon) else recon[sl]
        num += float(((xb - rb) ** 2).sum())
        den += float((xb * xb).sum())
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


def _row_slices(X: Any) -> list[slice]:
    """Slices of rows to read at a time: 2048 in memory, whole chunks of a Dask array."""
    if _is_lazy(X):
        edges = np.cumsum((0, *X.chunks[0]))
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [slice(i, i + 2048) for i in range(0, X.shape[0], 2048)]


def _cluster_means(X: Any, labels: np.ndarray, n_clusters: int) -> np.ndarray:
    """Mean spectrum of each cluster ``(n_clusters, c)``, summed a block of rows at a time;
    unlabelled rows (-1) are left out."""
    sums = np.zeros((n_clusters, X.shape[1]), dtype=np.float64)
    counts = np.zeros(n_clusters, dtype=np.int64)
    for sl in _row_slices(X):
        lab = labels[sl]
        xb = np.asarray(X[sl], dtype=np.float64)
        for i in np.unique(lab[lab >= 0]):  # few clusters: one vectorised sum each
            sums[i] += xb[lab == i].sum(0)
        counts += np.bincount(lab[lab >= 0], minlength=n_clusters)
    return sums / np.maximum(counts, 1)[:, None]


def _bin_lazy(cube: Any, factor: int | tuple[int, int]) -> Any:
    """``bin_spatial`` (sum) of a Dask cube, block by block."""
    import dask.array as da

    fy, fx = (factor, factor) if isinstance(factor, int) else factor
    if fy < 1 or fx < 1 or fy > cube.shape[0] or fx > cube.shape[1]:
        raise ValueError(f"bin factor {factor} must be >= 1 and fit the map {cube.shape[:2]}")
    by, bx = cube.shape[0] // fy, cube.shape[1] // fx
    trimmed = cube[: by * fy, : bx * fx].rechunk({0: max(fy, cube.chunks[0][0] // fy * fy),
                                                  1: -1, 2: -1})
    return da.coarsen(np.sum, trimmed, {0: fy, 1: fx})


def _poisson_normalize_lazy(X: Any) -> tuple[Any, np.ndarray, np.ndarray]:
    """``poisson_normalize`` of lazy spectra: the row and channel means are computed (one
    pass each), the division stays lazy."""
    n_neg = int((X < 0).sum())
    if n_neg:
        raise ValueError(f"Poisson normalisation needs non-negative counts, but the data has "
                         f"{n_neg} negative values; drop poisson=True or undo the background "
                         "subtraction")
    g = np.sqrt(np.asarray(X.mean(1), dtype=np.float64))
    h = np.sqrt(np.asarray(X.mean(0), dtype=np.float64))
    g[g == 0] = 1.0
    h[h == 0] = 1.0
    Xp = X / g[:, None].astype(np.float32) / h[None, :].astype(np.float32)
    return Xp.astype(np.float32), g, h


def _reshape_extra(v: np.ndarray, ny: int, nx: int) -> np.ndarray:
    v = np.asarray(v)
    if v.ndim == 2 and v.shape[0] == ny * nx:
        return v.reshape(ny, nx, -1)
    return v

"""Hyperspectral toolbox: scikit-learn-style estimators on spectra and the ``unmix`` call.

Cubes larger than memory (Dask, Zarr, HDF5): :class:`IncrementalPCA`, :class:`ChunkedNMF` and
:class:`ChunkedKMeans` read them a block of spectra at a time (see
:mod:`latentatlas.spectral.outofcore`).

A cube ``(ny, nx, channels)`` becomes ``(ny * nx, channels)`` spectra; every method returns
an :class:`UnmixResult` with components, loading maps, labels and the parameters used.
"""

from latentatlas.spectral.blu import BayesianLinearUnmixing, truncated_normal
from latentatlas.spectral.clustering import KMeans
from latentatlas.spectral.decomposition import NMF, PCA, randomized_svd, successive_projections
from latentatlas.spectral.neural import SOM, SpectralAutoencoder
from latentatlas.spectral.outofcore import ChunkedKMeans, ChunkedNMF, IncrementalPCA
from latentatlas.spectral.preprocessing import (
    bin_spatial,
    center_scale,
    crop_channels,
    poisson_normalize,
    poisson_unnormalize,
)
from latentatlas.spectral.result import UnmixResult
from latentatlas.spectral.unmix import list_methods, register_method, unmix

__all__ = [
    "NMF",
    "PCA",
    "SOM",
    "BayesianLinearUnmixing",
    "ChunkedKMeans",
    "ChunkedNMF",
    "IncrementalPCA",
    "KMeans",
    "SpectralAutoencoder",
    "UnmixResult",
    "bin_spatial",
    "center_scale",
    "crop_channels",
    "list_methods",
    "poisson_normalize",
    "poisson_unnormalize",
    "randomized_svd",
    "register_method",
    "successive_projections",
    "truncated_normal",
    "unmix",
]

"""Every unmixing method runs on each real cube in ../shared/data (quick settings).

These check that real files (units, negative values, uint16 counts, tiny currents,
non-uniform bias axes) flow through ``latentatlas.io.load`` and ``unmix`` and give finite
results of the right shapes; the accuracy properties are tested on generated cubes.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from conftest import shared_data
from latentatlas import io
from latentatlas.spectral import unmix

CUBES = {
    "bfo_iv": ("spm_spectroscopy", "bfo_iv_final.hf5"),
    "norm_polarization": ("spm_spectroscopy", "norm_polarization.npy"),
    "beps_pto": ("pfm_dtmicroscope", "BEPS_PTO_50x50.h5"),
    "nanonis_grid": ("spm_spectroscopy", "Grid Spectroscopy002.3ds"),
    "velox_eels": ("eels", "velox_EELS_EDS.zip"),
}

# few iterations: these runs check plumbing on real files, not convergence
QUICK: dict[str, dict[str, Any]] = {
    "pca": {},
    "nmf": {"max_iter": 10, "offset": "min"},
    "blu": {"n_samples": 10, "n_burn": 5, "offset": "min"},
    "kmeans": {"max_iter": 10},
    "gmm": {"max_iter": 20},
    "dbscan": {},
    "hdbscan": {"bin": 2},
    "isomap": {"max_fit_samples": 200},
    "tsne": {"max_iter": 250, "bin": 5, "n_components": 2},
    "umap": {"n_epochs": 20, "bin": 2, "n_components": 2},
    "som": {"n_epochs": 2},
    "autoencoder": {"n_epochs": 1},
}


@functools.cache
def _load(name: str) -> Any:
    return io.load(shared_data(*CUBES[name]))


@pytest.mark.parametrize("method", sorted(QUICK))
@pytest.mark.parametrize("cube", sorted(CUBES))
def test_method_runs_on_real_cube(cube: str, method: str) -> None:
    if method == "umap" and not os.environ.get("LATENTATLAS_SLOW"):
        pytest.skip("umap's numba compilation takes ~50 s; set LATENTATLAS_SLOW=1")
    ds = _load(cube)
    assert ds.data.ndim == 3
    opts = dict(QUICK[method])
    k = opts.pop("n_components", 3)
    res = unmix(ds, method, k, random_state=0, **opts)
    ny, nx = res.spatial_shape
    assert res.energy.shape == (ds.data.shape[-1],)
    assert res.energy_units == (ds.axes[-1].units or "")
    if res.components is not None:
        assert res.components.shape == (k, ds.data.shape[-1])
        assert np.isfinite(res.components).all()
    if res.loadings is not None:
        assert res.loadings.shape[:2] == (ny, nx) and np.isfinite(res.loadings).all()
    if res.labels is not None:
        assert res.labels.shape == (ny, nx)
        assert res.cluster_means is not None and np.isfinite(res.cluster_means).all()
    assert res.components is not None or res.loadings is not None or res.labels is not None
    if ds.axes[1].units:
        assert res.calibration.units == ds.axes[0].units
        assert res.calibration.scale[1] == pytest.approx(abs(ds.axes[1].scale) * opts.get("bin", 1))
    if method == "blu":
        assert res.loadings is not None
        np.testing.assert_allclose(res.loadings.sum(-1), 1.0, atol=1e-6)  # float32 data

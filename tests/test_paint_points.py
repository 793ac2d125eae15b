"""paint_points paints every pixel closer than the radius to a point with the value of its
nearest point: checked against a brute-force search over all pixels and points."""

from __future__ import annotations

import numpy as np

from latentatlas.analysis.latent_maps import paint_points, typical_spacing


def _brute(vals: np.ndarray, pts: np.ndarray, shape: tuple[int, int], radius: float
           ) -> np.ndarray:
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    d2 = (rr[..., None] - pts[:, 0]) ** 2 + (cc[..., None] - pts[:, 1]) ** 2  # (h, w, n)
    nearest = d2.argmin(-1)
    hit = d2.min(-1) < radius**2
    return np.where(hit, vals[nearest], np.nan)


def test_nearest_point_within_the_radius() -> None:
    rng = np.random.default_rng(1)
    for radius in (0.7, 2.5, 2.95, 6.0):
        pts = rng.uniform(-4, 44, (400, 2))  # some outside the image
        vals = rng.integers(0, 5, 400).astype(float)
        got = paint_points(vals, pts, (40, 37), radius)
        np.testing.assert_array_equal(got, _brute(vals, pts, (40, 37), radius))
    # the default radius is half the typical spacing
    got = paint_points(vals, pts, (40, 37))
    np.testing.assert_array_equal(got, _brute(vals, pts, (40, 37), 0.5 * typical_spacing(pts)))
    assert np.isnan(paint_points(vals[:0], pts[:0], (5, 5))).all()

"""How well inferred pose latents follow a known pose: circular correlation of angles, per class.

Used to check a rotation-invariant VAE on generated data with ground truth (the four-shape set
``latentatlas.datasets.shapes.four_shapes``).
"""

from __future__ import annotations

import numpy as np

from latentatlas._checks import check_array


def circular_correlation(a: object, b: object, order: int = 1) -> float:
    """Fisher-Lee circular correlation of two angle arrays (n,) in radians, in [-1, 1].

    rho = sum_ij sin(a_i - a_j) sin(b_i - b_j) / sqrt(sum_ij sin^2(a_i - a_j) sum_ij
    sin^2(b_i - b_j)) (Fisher & Lee 1983), computed in O(n). It is +1 when b = a + c, -1 when
    b = -a + c, for any constant c, and needs no circular mean, so it stays defined when the
    angles cover the whole circle (the Jammalamadaka-SenGupta coefficient subtracts each array's
    circular mean, which is arbitrary for uniformly spread angles and then lowers the value of
    an exact relation). order k compares k*a with k*b: for an object that looks the same after
    360/k degrees, angles are only defined modulo 360/k.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1 (the rotational symmetry's order), got {order}")
    x = order * check_array(a, "a", ndim=1, dtype=np.float64)
    y = order * check_array(b, "b", ndim=1, dtype=np.float64)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"a and b must be two angle arrays of one length >= 2, got {x.shape} and "
                         f"{y.shape}")
    cx, sx, cy, sy = np.cos(x), np.sin(x), np.cos(y), np.sin(y)
    # sum_ij sin(x_i - x_j) sin(y_i - y_j) = 2 (sum cx cy * sum sx sy - sum cx sy * sum sx cy)
    numerator = (cx * cy).sum() * (sx * sy).sum() - (cx * sy).sum() * (sx * cy).sum()
    spread_x = (cx**2).sum() * (sx**2).sum() - (cx * sx).sum() ** 2
    spread_y = (cy**2).sum() * (sy**2).sum() - (cy * sy).sum() ** 2
    denominator = np.sqrt(spread_x * spread_y)
    return float(numerator / denominator) if denominator > 0 else 0.0


def angle_recovery(inferred: object, true: object, labels: object,
                   orders: tuple[int, ...] | None = None) -> np.ndarray:
    """|circular correlation| between inferred and true angles within each class, (n_classes,).

    labels: (n,) integers 0..K-1. orders: each class's rotational symmetry order (default 1).
    The absolute value, because a model may learn any class's canonical frame mirrored.
    """
    lab = check_array(labels, "labels", ndim=1, dtype=np.int64)
    n_classes = int(lab.max()) + 1
    orders = orders or (1,) * n_classes
    if len(orders) != n_classes:
        raise ValueError(f"orders must give one symmetry order per class ({n_classes}), "
                         f"got {len(orders)}")
    inf = check_array(inferred, "inferred", ndim=1, dtype=np.float64)
    tru = check_array(true, "true", ndim=1, dtype=np.float64)
    return np.array([abs(circular_correlation(inf[lab == k], tru[lab == k], orders[k]))
                     for k in range(n_classes)])

"""Latent abundance by class: how each latent is distributed within each labelled class, and
how strongly the latent goes with the labels.

"Abundance of latent variables" is the hypothesis that a latent's values differ between the
classes (ring labels of graphene atoms, defect classes of crops). :func:`latent_abundance`
returns per-class means, spreads and quartiles of every latent, and per latent the
correlation ratio eta (0: the class says nothing about the latent, 1: the class fixes it) with
the Kruskal-Wallis test of equal distributions across classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from latentatlas._checks import check_array

__all__ = ["AbundanceTable", "latent_abundance"]


@dataclass(frozen=True)
class AbundanceTable:
    """Per-class statistics of each latent, and its association with the labels.

    classes: (k,) class ids present; class_names: their names; latents: latent names.
    counts: (k,) samples per class. mean, std, median, q25, q75: (k, d) per class and latent.
    overall_mean, overall_std: (d,). eta: (d,) correlation ratio; kruskal_p: (d,) p-value of
    the Kruskal-Wallis test (NaN where a latent is constant or fewer than two classes have
    two samples).
    """

    classes: np.ndarray
    class_names: tuple[str, ...]
    latents: tuple[str, ...]
    counts: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    median: np.ndarray
    q25: np.ndarray
    q75: np.ndarray
    overall_mean: np.ndarray
    overall_std: np.ndarray
    eta: np.ndarray
    kruskal_p: np.ndarray

    @property
    def standardized_means(self) -> np.ndarray:
        """(k, d) class means in units of each latent's overall standard deviation, about its
        overall mean (NaN for constant latents)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.mean - self.overall_mean) / np.where(self.overall_std > 0,
                                                              self.overall_std, np.nan)

    def to_markdown(self, digits: int = 2) -> str:
        """One row per latent: mean +- std in every class, eta and the Kruskal-Wallis p."""
        head = ("| latent | " + " | ".join(f"{n} (n={c})" for n, c in
                                         zip(self.class_names, self.counts, strict=True))
                + " | eta | p |")
        sep = "|---" * (len(self.class_names) + 3) + "|"
        rows = []
        for j, name in enumerate(self.latents):
            cells = " | ".join(f"{self.mean[i, j]:.{digits}f} ± {self.std[i, j]:.{digits}f}"
                               for i in range(len(self.classes)))
            rows.append(f"| {name} | {cells} | {self.eta[j]:.{digits}f} | "
                        f"{self.kruskal_p[j]:.2g} |")
        return "\n".join([head, sep, *rows])

    def as_dict(self) -> dict[str, dict[str, float]]:
        """{latent: {"eta", "p", "mean <class>"...}} for reports and JSON."""
        out: dict[str, dict[str, float]] = {}
        for j, name in enumerate(self.latents):
            row = {"eta": float(self.eta[j]), "p": float(self.kruskal_p[j])}
            row.update({f"mean {c}": float(self.mean[i, j])
                        for i, c in enumerate(self.class_names)})
            out[name] = row
        return out


def latent_abundance(
    latents: np.ndarray,
    labels: np.ndarray,
    latent_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> AbundanceTable:
    """Per-class distribution of every latent and its correlation ratio with the labels.

    latents: (n, d) (or (n,)); labels: (n,) non-negative integer classes (negative values mark
    unlabelled samples and are left out). class_names: a name per class id (indexed by id;
    default "class <id>"). Returns an :class:`AbundanceTable` over the classes present.
    """
    z = check_array(latents, "latents", ndim=(1, 2), dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(z):
        raise ValueError(f"labels must be (n,) with one label per latent row ({len(z)}), got "
                         f"shape {y.shape}")
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise ValueError(f"labels must be integer class ids, got dtype {y.dtype}")
    y = y.astype(np.int64)
    keep = y >= 0
    z, y = z[keep], y[keep]
    if len(y) == 0:
        raise ValueError("no labelled sample (every label is negative)")
    names = (tuple(latent_names) if latent_names is not None
             else tuple(f"z{i + 1}" for i in range(z.shape[1])))
    if len(names) != z.shape[1]:
        raise ValueError(f"{len(names)} latent names given for {z.shape[1]} latent columns")
    classes = np.unique(y)
    if class_names is not None and classes.max() >= len(class_names):
        raise ValueError(f"class_names has {len(class_names)} names but labels go up to "
                         f"{classes.max()}")
    cnames = tuple(str(class_names[c]) if class_names is not None else f"class {c}"
                   for c in classes)
    groups = [z[y == c] for c in classes]
    counts = np.array([len(g) for g in groups])
    mean = np.stack([g.mean(0) for g in groups])
    std = np.stack([g.std(0) for g in groups])
    q25, median, q75 = (np.stack([np.quantile(g, q, axis=0) for g in groups])
                        for q in (0.25, 0.5, 0.75))
    overall_mean, overall_std = z.mean(0), z.std(0)
    total = ((z - overall_mean) ** 2).sum(0)
    between = (counts[:, None] * (mean - overall_mean) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        eta = np.where(total > 0, np.sqrt(between / np.where(total > 0, total, 1.0)), np.nan)
    pvals = np.full(z.shape[1], np.nan)
    testable = [g for g in groups if len(g) >= 2]
    if len(testable) >= 2:
        for j in range(z.shape[1]):
            if np.ptp(z[:, j]) > 0:
                pvals[j] = float(stats.kruskal(*[g[:, j] for g in testable]).pvalue)
    return AbundanceTable(classes, cnames, names, counts, mean, std, median, q25, q75,
                          overall_mean, overall_std, eta, pvals)

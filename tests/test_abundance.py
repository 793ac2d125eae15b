"""Latent abundance by class: per-class distributions and the correlation ratio."""

from __future__ import annotations

import numpy as np
import pytest

from latentatlas.analysis.abundance import latent_abundance


def test_correlation_ratio_by_hand_and_per_class_statistics() -> None:
    z = np.array([1.0, 2, 3, 4, 5, 6])
    y = np.array([0, 0, 0, 1, 1, 1])
    table = latent_abundance(z, y, class_names=["a", "b"])
    # between-class sum of squares 3 * 1.5^2 * 2 = 13.5 over the total 17.5
    assert table.eta[0] == pytest.approx(np.sqrt(13.5 / 17.5))
    np.testing.assert_allclose(table.mean[:, 0], [2, 5])
    np.testing.assert_allclose(table.median[:, 0], [2, 5])
    np.testing.assert_allclose(table.q25[:, 0], [1.5, 4.5])
    np.testing.assert_array_equal(table.counts, [3, 3])
    assert table.class_names == ("a", "b") and table.latents == ("z1",)
    np.testing.assert_allclose(table.standardized_means[:, 0], np.array([-1.5, 1.5]) / z.std())


def test_a_latent_set_by_the_class_stands_out_from_noise() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    z = np.column_stack([y * 2.0 + rng.normal(0, 0.1, 300), rng.normal(size=300),
                         np.ones(300)])
    y_with_unlabelled = np.where(rng.random(300) < 0.1, -1, y)
    table = latent_abundance(z, y_with_unlabelled, ["class_latent", "noise", "constant"])
    assert table.counts.sum() == (y_with_unlabelled >= 0).sum()
    assert table.eta[0] > 0.99 and table.kruskal_p[0] < 1e-20
    assert table.eta[1] < 0.2 and table.kruskal_p[1] > 0.01
    assert np.isnan(table.eta[2]) and np.isnan(table.kruskal_p[2])
    text = table.to_markdown()
    assert "| class_latent |" in text and "class 2 (n=" in text
    assert set(table.as_dict()["noise"]) == {"eta", "p", "mean class 0", "mean class 1",
                                             "mean class 2"}


def test_abundance_input_errors_and_plots() -> None:
    from matplotlib.figure import Figure

    from latentatlas.plots.abundance import plot_abundance, plot_latent_by_class

    with pytest.raises(ValueError, match="one label per latent row"):
        latent_abundance(np.zeros((4, 2)), np.zeros(3, int))
    with pytest.raises(ValueError, match="integer"):
        latent_abundance(np.zeros((2, 1)), np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="no labelled"):
        latent_abundance(np.zeros((2, 1)), np.array([-1, -1]))
    with pytest.raises(ValueError, match="class_names"):
        latent_abundance(np.zeros((2, 1)), np.array([0, 3]), class_names=["a", "b"])
    z = np.random.default_rng(1).normal(size=(40, 2))
    y = np.arange(40) % 4
    table = latent_abundance(z, y)
    fig = Figure()
    axes = fig.subplots(1, 2)
    plot_abundance(axes[0], table)
    assert len(axes[0].texts) == 8 and axes[0].get_xticklabels()[0].get_text().startswith("z1")
    plot_latent_by_class(axes[1], z[:, 0], y, ["a", "b", "c", "d"], "z1")
    assert [t.get_text() for t in axes[1].get_xticklabels()] == ["a", "b", "c", "d"]

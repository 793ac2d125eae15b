"""rVAE on domain walls: wall patches, multilayer patches and time-delay patches.

    nice -n 10 env PYTHONPATH=src python benchmarks/walls_latents.py

1. Real PZT (PZT_final0001) wall patches -> rVAE; correlation of wall count, switching
   degree and curvature with every latent (table + heat map + latent maps).
2. Multilayer (amplitude, phase) patches at the same walls -> rVAE; the same table.
3. Time-delay (frames t, t+1) rVAE on a generated TDGL switching movie: how well the
   latents follow the local switching (correlation with the switched fraction at t and its
   change t -> t+1), forward latent plot, wall evolution map.
4. Time-delay rVAE on the real three-scan PZT sequence (PZT_final0001-0003, same area):
   forward plot; |latent change| against |switching change| per place.

Writes benchmarks/out/walls_latents.json and PNG figures beside it. CPU, one thread.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats

from latentatlas.analysis.domains import (
    descriptor_correlations,
    forward_pairs,
    latent_trajectories,
    patch_descriptors,
    wall_evolution_map,
)
from latentatlas.datasets.domains import render_pfm, switching_movie
from latentatlas.descriptors.timedelay import multilayer_patches, time_delay_patches
from latentatlas.descriptors.walls import find_walls, to_polarization, wall_patches
from latentatlas.io import load
from latentatlas.models import get_model
from latentatlas.models.latents import is_content_latent
from latentatlas.plots.domains import (
    plot_correlation_table,
    plot_latent_transition,
    plot_wall_evolution,
    plot_walls,
)
from latentatlas.plots.maps import plot_latent_scatter, save_figure

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfm_dtmicroscope"
OUT = Path(__file__).resolve().parent / "out"
EPOCHS = 25


def fit_rvae(x: np.ndarray, latent_dim: int = 2) -> tuple[list[str], np.ndarray, float]:
    start = time.perf_counter()
    model = get_model("rvae", input_shape=x.shape[1:], latent_dim=latent_dim, seed=0)
    model.fit(x, epochs=EPOCHS, batch_size=64, seed=0, progress=False)
    lat = model.encode(x)
    return list(lat.names), lat.mean, time.perf_counter() - start


def grid_centres(h: int, w: int, window: int, stride: int) -> np.ndarray:
    half = window // 2
    r = np.arange(half, h - (window - half) + 1, stride)
    c = np.arange(half, w - (window - half) + 1, stride)
    return np.stack(np.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2)


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    report: dict[str, object] = {"epochs": EPOCHS, "threads": 1}
    window = 20

    # 1. wall patches on real PZT ------------------------------------------------------------
    phase = load(DATA / "PZT_final0001.h5", channel="PhaseRetrace").data
    amp = load(DATA / "PZT_final0001.h5", channel="AmplitudeRetrace").data
    pol = to_polarization(phase)
    walls = find_walls(phase, "gaussian", phase=True)
    patches = wall_patches(pol, walls, window, max_patches=800, seed=0)
    names, z, secs = fit_rvae(patches.as_model_input())
    desc = patch_descriptors(walls.domains, patches.centers, window)
    table = descriptor_correlations(desc, z, names)
    report["wall_patches_pzt"] = {"n": len(patches), "seconds": round(secs, 1),
                                  "table": table.to_markdown()}
    print(table.to_markdown())
    fig = Figure(figsize=(4 * (len(names) + 1), 4))
    axes = fig.subplots(1, len(names) + 1)
    plot_walls(axes[0], pol, walls.mask)
    for ax, i in zip(axes[1:], range(len(names)), strict=True):
        plot_latent_scatter(ax, patches.centers, z[:, i], pol, names[i], size=6)
    fig.tight_layout()
    save_figure(fig, OUT / "walls_pzt_latent_maps.png")
    fig = Figure(figsize=(7, 3))
    plot_correlation_table(fig.add_subplot(1, 1, 1), table)
    fig.tight_layout()
    save_figure(fig, OUT / "walls_pzt_correlations.png")

    # 2. multilayer: amplitude + phase at the same walls ----------------------------------------
    ml = multilayer_patches({"amplitude": np.clip(amp, 0, np.percentile(amp, 99)),
                             "phase": pol}, patches.centers, window)
    names2, z2, secs2 = fit_rvae(ml.data)
    table2 = descriptor_correlations(desc, z2, names2)
    report["multilayer_pzt"] = {"n": len(ml), "seconds": round(secs2, 1),
                                "channels": ml.extra["channels"], "table": table2.to_markdown()}
    print(table2.to_markdown())

    # 3. time-delay rVAE on a generated switching movie ------------------------------------------
    movie = switching_movie((64, 64), n_frames=10, seed=1, initial="nucleus", disorder=0.15,
                            pulse=0.25)
    mphase, _ = render_pfm(movie.domains, seed=1, phase_noise=10.0, phase_offset=0.0)
    msig = to_polarization(mphase)
    centres = grid_centres(64, 64, 16, 4)
    td = time_delay_patches(msig, centres, 16, delay=2)
    names3, z3, secs3 = fit_rvae(td.data)
    # ground truth per patch: switched fraction at t and its change t -> t+1
    half = 8
    frac = np.array([movie.domains[f, r - half : r + half, c - half : c + half].mean()
                     for f, (r, c) in zip(td.frames, td.centers.astype(int), strict=True)])
    frac1 = np.array([movie.domains[f + 1, r - half : r + half, c - half : c + half].mean()
                      for f, (r, c) in zip(td.frames, td.centers.astype(int), strict=True)])
    truth = {"switched_fraction_t": frac, "switching_change": frac1 - frac}
    table3 = descriptor_correlations(truth, z3, names3)
    best = table3.strongest("switched_fraction_t")
    places, traj = latent_trajectories(z3[:, names3.index(best[0])], td.centers, td.frames)
    before, after = forward_pairs(traj)
    report["timedelay_generated"] = {"n": len(td), "seconds": round(secs3, 1),
                                     "table": table3.to_markdown(), "tracking_latent": best}
    print(table3.to_markdown())
    fig = Figure(figsize=(12, 4))
    ax = fig.subplots(1, 3)
    plot_wall_evolution(ax[0], wall_evolution_map(movie.walls))
    ax[0].set_title("wall evolution (generated)")
    plot_latent_transition(ax[1], before, after, best[0])
    plot_latent_transition(ax[2], before, after, best[0], reverse=True)
    fig.tight_layout()
    save_figure(fig, OUT / "walls_timedelay_generated.png")

    # 4. time-delay rVAE on the real PZT sequence -----------------------------------------------
    seq = np.stack([load(DATA / f"PZT_final000{i}.h5", channel="PhaseRetrace").data
                    for i in (1, 2, 3)])
    ssig = to_polarization(seq)
    swalls = find_walls(seq, "gaussian", phase=True)
    centres = grid_centres(256, 256, 24, 8)
    tdr = time_delay_patches(ssig, centres, 24, delay=2)
    names4, z4, secs4 = fit_rvae(tdr.data)
    half = 12
    sdom = swalls.domains
    assert sdom is not None
    change = np.array([
        abs(sdom[f + 1, r - half : r + half, c - half : c + half].mean()
            - sdom[f, r - half : r + half, c - half : c + half].mean())
        for f, (r, c) in zip(tdr.frames, tdr.centers.astype(int), strict=True)
    ])
    table4 = descriptor_correlations({"|switching change|": change}, z4, names4)
    content = [n for n in names4 if is_content_latent(n)]
    rows = {}
    for n in content:
        places4, tr4 = latent_trajectories(z4[:, names4.index(n)], tdr.centers, tdr.frames)
        b4, a4 = forward_pairs(tr4)
        rows[n] = round(float(stats.spearmanr(b4, a4).statistic), 3)
    report["timedelay_pzt"] = {"n": len(tdr), "seconds": round(secs4, 1),
                               "table": table4.to_markdown(),
                               "forward_spearman_t_vs_t1": rows,
                               "switched_fraction_per_frame":
                                   [round(float(d.mean()), 4) for d in sdom]}
    print(table4.to_markdown(), rows)
    fig = Figure(figsize=(4 * (len(content) + 1), 4))
    ax = fig.subplots(1, len(content) + 1)
    plot_wall_evolution(ax[0], wall_evolution_map(swalls.mask), ssig[0])
    ax[0].set_title("PZT walls: last frame seen")
    for a, n in zip(ax[1:], content, strict=True):
        _, tr4 = latent_trajectories(z4[:, names4.index(n)], tdr.centers, tdr.frames)
        b4, a4 = forward_pairs(tr4)
        plot_latent_transition(a, b4, a4, n)
    fig.tight_layout()
    save_figure(fig, OUT / "walls_timedelay_pzt.png")
    (OUT / "walls_latents.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Wall pinning: planted sites in generated TDGL movies, latents at pinned walls, real PZT.

    nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/pinning_bench.py

1. Generated movies (96 x 96, 12 frames, pulse 0.3 x 60 steps, random-field disorder 0.1)
   with 8 planted pinning defects of several strengths: F1 of the pinning sites
   (``pinning_sites(pinning_map(...))``) against the planted centres within 4 px, on held-out
   seeds 100-109, from the exact domains and from domains segmented in rendered PFM phase
   (10 deg noise, gaussian method). Baseline: the centroids of the small unswitched islands
   left in the last frame. Clean movies (no defects): number of false sites.
   The detector settings (still = 1 px, min_steps = 2, min_growth = 0.002, components of
   >= 3 px) and the movie settings were chosen on seeds 0-7 only.
2. Time-delay rVAE (frames t, t+1) on one pinned movie: Spearman correlation of the latents
   with the pinned fraction, changed fraction, switch significance (domains segmented in the
   rendered phase, noise floor from four repeated unswitched renders) and convexity of each
   patch, and the wall density as a control; PCA scores of the same patches beside
   (baseline). Two rVAE seeds.
3. Real PZT_final0001-0003 (three scans of one area, phase channel): wall table with the new
   columns, wall displacement per step, pinning map and sites; time-delay and multilayer
   (amplitude, phase) rVAE latents against the pinned fraction per patch, PCA beside.

Writes benchmarks/results/pinning.json and figures in benchmarks/out/. CPU, one thread.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import ndimage
from sklearn.decomposition import PCA

from latentatlas.analysis.domains import (
    descriptor_correlations,
    patch_descriptors,
    pinned_fraction,
    pinning_map,
    pinning_sites,
    switch_noise_level,
    wall_displacement,
    wall_table,
)
from latentatlas.analysis.matching import match_points
from latentatlas.datasets.domains import domain_walls, render_pfm, switching_movie
from latentatlas.descriptors.timedelay import multilayer_patches, time_delay_patches
from latentatlas.descriptors.walls import find_walls, to_polarization
from latentatlas.io import load
from latentatlas.models import get_model
from latentatlas.plots.domains import plot_correlation_table, plot_walls
from latentatlas.plots.maps import save_figure

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parents[1] / "shared" / "data" / "pfm_dtmicroscope"
OUT = ROOT / "out"
RESULTS = ROOT / "results"
MOVIE = dict(shape=(96, 96), n_frames=12, pulse=0.3, pulse_steps=60, disorder=0.1)
TEST_SEEDS = range(100, 110)
STRENGTHS = (0.75, 1.0, 1.5, 2.0)
RADIUS = 4.0
EPOCHS = 20


def island_sites(domains: np.ndarray, max_area: int = 200, min_area: int = 3) -> np.ndarray:
    """Baseline: centroids of the small unswitched islands of the last frame."""
    labels, n = ndimage.label(~domains[-1])
    if n == 0:
        return np.zeros((0, 2))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    keep = np.flatnonzero((sizes >= min_area) & (sizes <= max_area)) + 1
    if len(keep) == 0:
        return np.zeros((0, 2))
    return np.asarray(ndimage.center_of_mass(np.ones_like(labels), labels, keep)).reshape(-1, 2)


def oriented(domains: np.ndarray) -> np.ndarray:
    """Segmented stacks label the minority state True; make True the state that grows."""
    return domains if domains[-1].mean() >= domains[0].mean() else ~domains


def stats_of(values: list[float]) -> dict[str, float]:
    return {"mean": round(float(np.mean(values)), 3), "std": round(float(np.std(values)), 3),
            "min": round(float(np.min(values)), 3)}


def generated_sites() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for strength in STRENGTHS:
        rows: dict[str, list[float]] = {"pinning_exact": [], "pinning_rendered": [],
                                        "islands_baseline": [], "precision_exact": [],
                                        "recall_exact": []}
        for seed in TEST_SEEDS:
            movie = switching_movie(seed=seed, pinning_sites=8, pinning_strength=strength,
                                    **MOVIE)
            exact = match_points(pinning_sites(pinning_map(movie.walls, movie.domains)),
                                 movie.sites, RADIUS)
            phase, _ = render_pfm(movie.domains, seed=seed, phase_noise=10.0)
            dom = oriented(find_walls(phase, "gaussian", phase=True).domains)
            rendered = match_points(pinning_sites(pinning_map(domain_walls(dom), dom)),
                                    movie.sites, RADIUS)
            base = match_points(island_sites(movie.domains), movie.sites, RADIUS)
            rows["pinning_exact"].append(exact.f1)
            rows["precision_exact"].append(exact.precision)
            rows["recall_exact"].append(exact.recall)
            rows["pinning_rendered"].append(rendered.f1)
            rows["islands_baseline"].append(base.f1)
        out[f"strength_{strength}"] = {k: stats_of(v) for k, v in rows.items()}
        print(strength, out[f"strength_{strength}"])
    false_sites, false_islands = [], []
    for seed in TEST_SEEDS:
        clean = switching_movie(seed=seed, **MOVIE)
        false_sites.append(len(pinning_sites(pinning_map(clean.walls, clean.domains))))
        false_islands.append(len(island_sites(clean.domains)))
    out["clean_movies"] = {"false_sites_per_movie": false_sites,
                           "false_islands_per_movie": false_islands}
    # the noise floor of the switch significance for this rendering: repeated unswitched
    # scans of one domain map, segmented like the frames
    movie = switching_movie(seed=100, pinning_sites=8, **MOVIE)
    repeats = np.stack([movie.domains[5]] * 4)
    phase, _ = render_pfm(repeats, seed=7, phase_noise=10.0)
    scans = find_walls(phase, "gaussian", phase=True).domains
    out["noise_level_rendered_16px_q99"] = round(switch_noise_level(scans, 16), 4)
    return out


def fit_latents(x: np.ndarray, seed: int) -> tuple[list[str], np.ndarray, float]:
    start = time.perf_counter()
    model = get_model("rvae", input_shape=x.shape[1:], latent_dim=2, seed=seed)
    model.fit(x, epochs=EPOCHS, batch_size=64, seed=seed, progress=False)
    lat = model.encode(x)
    return list(lat.names), np.asarray(lat.mean), time.perf_counter() - start


def latent_tables(x: np.ndarray, desc: dict[str, np.ndarray], label: str) -> dict[str, Any]:
    """Correlation tables of rVAE latents (two seeds) and PCA scores with the descriptors."""
    out: dict[str, Any] = {"n_patches": int(len(x)), "shape": list(x.shape[1:])}
    for seed in (0, 1):
        names, z, secs = fit_latents(x, seed)
        table = descriptor_correlations(desc, z, names)
        out[f"rvae_seed{seed}"] = {"seconds": round(secs, 1), "table": table.to_markdown(),
                                   "strongest_pinned": table.strongest("pinned_fraction")}
        print(label, seed, table.to_markdown(), sep="\n")
        if seed == 0:
            fig = Figure(figsize=(7, 3.5))
            plot_correlation_table(fig.add_subplot(1, 1, 1), table)
            fig.tight_layout()
            save_figure(fig, OUT / f"pinning_{label}_correlations.png")
    pca = PCA(2, random_state=0).fit_transform(x.reshape(len(x), -1))
    table = descriptor_correlations(desc, pca, ["pc1", "pc2"])
    out["pca_baseline"] = {"table": table.to_markdown(),
                           "strongest_pinned": table.strongest("pinned_fraction")}
    print(label, "PCA", table.to_markdown(), sep="\n")
    return out


def grid(h: int, w: int, window: int, stride: int) -> np.ndarray:
    half = window // 2
    r = np.arange(half, h - (window - half) + 1, stride)
    c = np.arange(half, w - (window - half) + 1, stride)
    return np.stack(np.meshgrid(r, c, indexing="ij"), -1).reshape(-1, 2)


def wall_density(walls: np.ndarray, centers: np.ndarray, frames: np.ndarray,
                 window: int) -> np.ndarray:
    """Fraction of each patch on a wall (frame + 1): the control for the pinned fraction,
    which can only be high where there are walls."""
    half = window // 2
    return np.array([walls[f + 1, r - half:r - half + window, c - half:c - half + window].mean()
                     for f, (r, c) in zip(frames, np.rint(centers).astype(int), strict=True)])


def generated_latents() -> dict[str, Any]:
    """Descriptors from the domains segmented in the rendered phase, as on real data, with the
    noise floor of repeated unswitched renders; the pinned fraction from the exact movie."""
    movie = switching_movie(seed=100, pinning_sites=8, **MOVIE)
    phase, _ = render_pfm(movie.domains, seed=100, phase_noise=10.0, phase_offset=0.0)
    found = find_walls(phase, "gaussian", phase=True).domains
    dom = oriented(found)
    window = 16
    repeats, _ = render_pfm(np.stack([movie.domains[5]] * 4), seed=7, phase_noise=10.0)
    noise = switch_noise_level(find_walls(repeats, "gaussian", phase=True).domains, window)
    counts = pinning_map(movie.walls, movie.domains)
    td = time_delay_patches(to_polarization(phase), grid(96, 96, window, 6), window, delay=2)
    desc = patch_descriptors(dom, td.centers, window, frames=td.frames, delay=1, noise=noise)
    desc = {k: desc[k] for k in ("changed_fraction", "switch_significance", "convexity")}
    desc["pinned_fraction"] = pinned_fraction(counts, td.centers, window)
    desc["wall_density"] = wall_density(movie.walls, td.centers, td.frames, window)
    out = latent_tables(td.data, desc, "generated_timedelay")
    out["noise_level"] = round(noise, 4)
    return out


def real_pzt() -> dict[str, Any]:
    files = [DATA / f"PZT_final000{i}.h5" for i in (1, 2, 3)]
    seq = np.stack([load(f, channel="PhaseRetrace").data for f in files])
    amp = np.stack([load(f, channel="AmplitudeRetrace").data for f in files])
    walls = find_walls(seq, "gaussian", phase=True)
    dom = walls.domains
    assert dom is not None
    out: dict[str, Any] = {"wall_table": [{k: round(float(v), 4) for k, v in r.items()}
                                          for r in wall_table(walls)]}
    disp = wall_displacement(walls.mask)
    out["displacement"] = [
        {"step": f"{t}->{t + 1}", "wall_pixels": int(np.isfinite(d).sum()),
         "still_fraction": round(float((d[np.isfinite(d)] <= 1).mean()), 3),
         "median_px": float(np.median(d[np.isfinite(d)])),
         "p90_px": round(float(np.percentile(d[np.isfinite(d)], 90)), 1)}
        for t, d in enumerate(disp)]
    counts = pinning_map(walls.mask, dom)
    sites2 = pinning_sites(counts, min_steps=2)
    sites1 = pinning_sites(counts, min_steps=1, min_pixels=10)
    out["pinning"] = {
        "held_1_step_px": int((counts >= 1).sum()), "held_2_steps_px": int((counts >= 2).sum()),
        "sites_min_steps2": sites2.round(1).tolist(),
        "sites_min_steps1_min10px": len(sites1),
        "sites_min_steps1_in_strip_cols_gt_180": int((sites1[:, 1] > 180).sum()),
    }
    print(out)
    fig = Figure(figsize=(12, 4))
    ax = fig.subplots(1, 3)
    plot_walls(ax[0], to_polarization(seq)[1], [walls.mask[0], walls.mask[1]], ["scan 1", "scan 2"])
    plot_walls(ax[1], to_polarization(seq)[2], [walls.mask[1], walls.mask[2]], ["scan 2", "scan 3"])
    im = ax[2].imshow(np.ma.masked_equal(counts, 0), cmap="viridis", interpolation="nearest")
    ax[2].set_title("pinning map (still wall steps)")
    fig.colorbar(im, ax=ax[2])
    fig.tight_layout()
    save_figure(fig, OUT / "pinning_pzt.png")

    window = 24
    centres = grid(256, 256, window, 12)
    td = time_delay_patches(to_polarization(seq), centres, window, delay=2)
    desc = patch_descriptors(dom, td.centers, window, frames=td.frames, delay=1)
    desc = {k: desc[k] for k in ("changed_fraction", "switch_significance", "convexity")}
    # two growing steps only: a wall still in one of them is the most the sequence can show
    desc["pinned_fraction"] = pinned_fraction(counts, td.centers, window, min_steps=1)
    desc["wall_density"] = wall_density(walls.mask, td.centers, td.frames, window)
    out["timedelay"] = latent_tables(td.data, desc, "pzt_timedelay")
    ml = multilayer_patches({"amplitude": np.clip(amp[1], 0, np.percentile(amp[1], 99)),
                             "phase": to_polarization(seq)[1]}, centres, window)
    desc_ml = patch_descriptors(dom, ml.centers, window, frames=np.ones(len(ml), int), delay=1)
    desc_ml = {k: desc_ml[k] for k in ("changed_fraction", "switch_significance", "convexity")}
    desc_ml["pinned_fraction"] = pinned_fraction(counts, ml.centers, window, min_steps=1)
    desc_ml["wall_density"] = wall_density(walls.mask, ml.centers, np.zeros(len(ml), int),
                                           window)
    out["multilayer_scan2"] = latent_tables(ml.data, desc_ml, "pzt_multilayer")
    return out


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    start = time.perf_counter()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1",
        "command": "nice -n 10 env OMP_NUM_THREADS=1 PYTHONPATH=src "
                   "python benchmarks/pinning_bench.py",
        "movie": MOVIE, "match_radius_px": RADIUS, "test_seeds": list(TEST_SEEDS),
        "rvae_epochs": EPOCHS,
    }
    report["generated_sites"] = generated_sites()
    report["generated_latents"] = generated_latents()
    report["real_pzt"] = real_pzt()
    report["seconds"] = round(time.perf_counter() - start, 1)
    (RESULTS / "pinning.json").write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()

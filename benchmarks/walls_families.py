"""Multilayer rVAE on wall families of the real PZT scan (PZT_final0001).

    nice -n 10 env PYTHONPATH=src python benchmarks/walls_families.py

Layers: "family" = 180-degree walls (gaussian method on the phase), "all" = every edge of the
amplitude image (Canny; the a/c 90-degree stripes show in amplitude only), "other" = all minus
the 180-degree family (about the 90-degree walls). Patches every 8 px; the rVAE latents are
correlated with the density of each family in the patch. Writes
benchmarks/out/walls_families.json and walls_families.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from latentatlas.analysis.domains import descriptor_correlations
from latentatlas.descriptors.timedelay import multilayer_patches, wall_family_layers
from latentatlas.descriptors.walls import find_walls
from latentatlas.io import load
from latentatlas.models import get_model
from latentatlas.plots.domains import plot_correlation_table, plot_walls
from latentatlas.plots.maps import plot_latent_scatter, save_figure

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfm_dtmicroscope"
OUT = Path(__file__).resolve().parent / "out"


def main() -> None:
    torch.set_num_threads(1)
    path = DATA / "PZT_final0001.h5"
    phase = load(path, channel="PhaseRetrace").data
    amp = load(path, channel="AmplitudeRetrace").data
    family = find_walls(phase, "gaussian", phase=True).mask
    every = find_walls(np.clip(amp, 0, np.percentile(amp, 99)), "canny", sigma=1.5).mask
    layers = wall_family_layers(every, family, blur=1.0)
    window, stride = 24, 8
    half = window // 2
    r = np.arange(half, 256 - half + 1, stride)
    centres = np.stack(np.meshgrid(r, r, indexing="ij"), -1).reshape(-1, 2)
    patches = multilayer_patches(layers, centres, window)
    start = time.perf_counter()
    model = get_model("rvae", input_shape=patches.data.shape[1:], latent_dim=2, seed=0)
    model.fit(patches.data, epochs=25, batch_size=64, seed=0, progress=False)
    lat = model.encode(patches.data)
    secs = time.perf_counter() - start
    # densities of each family in each patch (wall pixels per patch pixel)
    raw = {"180_walls": family, "all_walls": every,
           "other_walls": wall_family_layers(every, family, blur=0)["other"] > 0}
    c = patches.centers.astype(int)
    desc = {name: np.array([m[i - half : i + half, j - half : j + half].mean() for i, j in c])
            for name, m in raw.items()}
    table = descriptor_correlations(desc, lat.mean, lat.names)
    print(table.to_markdown())
    OUT.mkdir(exist_ok=True)
    (OUT / "walls_families.json").write_text(json.dumps(
        {"n": len(patches), "seconds": round(secs, 1), "channels": patches.extra["channels"],
         "wall_pixels": {k: int(v.sum()) for k, v in raw.items()},
         "table": table.to_markdown()}, indent=2))
    fig = Figure(figsize=(20, 4))
    ax = fig.subplots(1, 5)
    plot_walls(ax[0], amp, [family, raw["other_walls"]], labels=["180 deg", "other"])
    content = lat.content_names
    for a, n in zip(ax[1:3], content, strict=False):
        plot_latent_scatter(a, patches.centers, lat[n], amp, n, size=12)
    plot_correlation_table(ax[3], table)
    ax[4].set_axis_off()
    fig.tight_layout()
    save_figure(fig, OUT / "walls_families.png")


if __name__ == "__main__":
    main()

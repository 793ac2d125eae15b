"""Explorer file size and time to first render on a 2048 x 2048 image with ~40,000 atoms.

    PYTHONPATH=src nice python benchmarks/explorer_bench.py [--epochs 3] [--loads 5]

1. ``analyze`` the generated two-site lattice (2048 x 2048, spacing 14.5 px: ~40k atoms, the
   image of the analyze-stages benchmark) with an rVAE (few epochs on a 5,000-patch subset:
   the numbers measured here do not depend on how well it is trained).
2. Build the explorer inputs (``from_analysis``: every patch reconstructed, baselines) and
   write the file with each backend (webgl, canvas); the baseline is the same explorer
   without thumbnails.
3. Open each file in headless Chromium (the system package, driven by Playwright) ``--loads``
   times: time to first render = ``performance.now()`` (ms since navigation start) when the
   Bokeh document is idle (every view drawn), and the CPU time all Chromium processes spent
   until then (insensitive to other jobs sharing the machine's cores); then one box
   selection over about half of the latent scatter: time from releasing the mouse to the
   selection summary showing the count.

Writes benchmarks/results/explorer_bench.json and prints a markdown table. CPU, 1 torch thread.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
OUT = Path(__file__).resolve().parent / "out"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = "() => window.Bokeh && Bokeh.documents.length > 0 && Bokeh.documents[0].is_idle"
TO_PAGE = """([name, x, y]) => {
  const fig = Bokeh.documents[0].get_model_by_name(name), view = Bokeh.index.find_one(fig)
  const box = view.el.getBoundingClientRect()
  return [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)]
}"""


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _chromium_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) of every running Chromium process, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"chromium" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def browser_times(path: Path, loads: int, box: tuple[float, float, float, float]
                  ) -> dict[str, Any]:
    """First-render times (ms) of ``loads`` fresh pages and one box-selection latency (ms)."""
    from playwright.sync_api import sync_playwright

    render, busy, select, errors = [], [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        version = browser.version
        for k in range(loads):
            page = browser.new_page(viewport={"width": 1300, "height": 1150})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            before = _chromium_cpu_s()
            page.goto(path.resolve().as_uri(), timeout=120_000)
            page.wait_for_function(READY, polling="raf", timeout=120_000)
            render.append(float(page.evaluate("() => performance.now()")))
            # CPU time Chromium spent (all its processes): what the page costs, whatever else
            # runs on the machine
            after = _chromium_cpu_s()
            busy.append(1000 * sum(v - before.get(pid, 0.0) for pid, v in after.items()))
            if k == 0:
                x0, y0, x1, y1 = box
                a = page.evaluate(TO_PAGE, ["scatter_figure", x0, y0])
                b = page.evaluate(TO_PAGE, ["scatter_figure", x1, y1])
                page.mouse.move(*a)
                page.mouse.down()
                page.mouse.move(*b, steps=4)
                t = time.perf_counter()
                page.mouse.up()
                page.wait_for_function(
                    "() => Bokeh.documents[0].get_model_by_name('selection_info').text"
                    ".indexOf('<table') >= 0", polling="raf")
                select.append((time.perf_counter() - t) * 1000)
                n_sel = page.evaluate("() => Bokeh.documents[0].get_model_by_name('points')"
                                      ".selected.indices.length")
            page.close()
        browser.close()
    return {"first_render_ms": render, "first_render_ms_median": float(np.median(render)),
            "chromium_cpu_ms": busy, "chromium_cpu_ms_median": float(np.median(busy)),
            "box_selection_ms": select[0], "box_selected": int(n_sel),
            "console_errors": errors, "chromium": version}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--spacing", type=float, default=14.5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from latentatlas.datasets.lattices import two_site_lattice
    from latentatlas.pipelines.analyze import analyze
    from latentatlas.report.explorer import ExplorerData, _shrink, sprite_sheet, write_explorer
    from latentatlas.report.explorer_adapters import from_analysis

    load_before = os.getloadavg()[0]
    lat = two_site_lattice(shape=(args.size, args.size), spacing=args.spacing)
    t = time.perf_counter()
    result = analyze(lat.image, atoms="peaks", epochs=args.epochs, train_samples=5000,
                     progress=False)
    t_analyze = time.perf_counter() - t
    n = len(result.patches)

    t = time.perf_counter()
    data = from_analysis(result, pixel_size=0.02, units="nm")
    t_adapt = time.perf_counter() - t
    OUT.mkdir(parents=True, exist_ok=True)
    bare = ExplorerData(frames=data.frames, positions=data.positions, values=data.values,
                        std=data.std, categorical=data.categorical, window=data.window,
                        pixel_size=data.pixel_size, units=data.units, manifold=data.manifold,
                        title=data.title)
    assert data.patches is not None and data.reconstructions is not None
    small = _shrink(data.patches)
    low, high = small.min(axis=(1, 2)), small.max(axis=(1, 2))
    sprite_mb = {k: len(base64.b64encode(sprite_sheet(_shrink(t_), low, high)[0])) / 1e6
                 for k, t_ in (("patches", data.patches), ("reconstructions",
                                                          data.reconstructions))}
    z1, z2 = data.values["z1"], data.values["z2"]
    box = (float(np.percentile(z1, 5)), float(np.percentile(z2, 5)),
           float(np.percentile(z1, 70)), float(np.percentile(z2, 70)))
    rows = []
    for label, d, backend in (("explorer", data, "webgl"), ("explorer", data, "canvas"),
                              ("baseline: no thumbnails", bare, "webgl"),
                              ("baseline: no thumbnails", bare, "canvas")):
        t = time.perf_counter()
        path = write_explorer(OUT / f"explorer_2048_{backend}_{d is data}.html", d,
                              backend=backend)
        t_write = time.perf_counter() - t
        times = browser_times(path, args.loads, box)
        rows.append({"file": label, "backend": backend, "size_mb": path.stat().st_size / 1e6,
                     "write_s": t_write, **times})
    record = {
        "benchmark": "explorer_bench", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{_cpu_name()}, {torch.get_num_threads()} torch thread",
        "image": [args.size, args.size], "atoms_generated": int(len(lat.positions)),
        "samples": n, "window": int(result.patches.window), "epochs": args.epochs,
        "load_average": [load_before, os.getloadavg()[0]], "analyze_s": t_analyze,
        "adapter_s": t_adapt, "sprite_base64_mb": sprite_mb,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "explorer_bench.json").write_text(json.dumps(record, indent=2))
    print(f"{n} samples, window {result.patches.window}; analyze {t_analyze:.0f} s, "
          f"adapter {t_adapt:.1f} s; sprites (base64 MB) {sprite_mb}")
    print("| file | backend | size (MB) | write (s) | first render (ms): median, min-max | "
          "Chromium CPU (ms): median | box selection (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        fr = r["first_render_ms"]
        print(f"| {r['file']} | {r['backend']} | {r['size_mb']:.1f} | {r['write_s']:.1f} | "
              f"{r['first_render_ms_median']:.0f}, {min(fr):.0f}-{max(fr):.0f} | "
              f"{r['chromium_cpu_ms_median']:.0f} | {r['box_selection_ms']:.0f} "
              f"({r['box_selected']} selected) |")


if __name__ == "__main__":
    main()

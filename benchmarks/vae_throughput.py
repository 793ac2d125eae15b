"""rVAE training throughput and test ELBO: spatial vs transform decoder (issue 2 benchmark).

10,000 generated 28x28 rotated/shifted shapes, latent size 2, batch sizes 100 and 1000.
Throughput = training images per second over the timed epochs (after one warm-up epoch);
the test ELBO (nats per image, 10% held out) is read after the last epoch.

    python benchmarks/vae_throughput.py --epochs 10 --threads 2 [--accelerator cuda]

Writes benchmarks/out/vae_throughput.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from latentatlas.datasets.shapes import rotated_shapes
from latentatlas.models import get_model


def run(decoder: str, batch: int, epochs: int, n: int, accelerator: str, precision: str | None,
        compile_: bool) -> dict[str, float | str | int]:
    data = rotated_shapes(n, size=28, seed=0)
    model = get_model("rvae", (28, 28), latent_dim=2, decoder=decoder, seed=0)
    stamps: list[float] = []
    model.fit(data.images, epochs=epochs + 1, batch_size=batch, lr=1e-3, progress=False,
              accelerator=accelerator, precision=precision, compile=compile_,
              on_epoch_end=lambda epoch, _: stamps.append(time.perf_counter()))
    timed = stamps[-1] - stamps[0]  # the first epoch (warm-up, compilation) is not timed
    n_train = int(round(n * 0.9))
    return {"decoder": decoder, "batch": batch, "epochs": epochs + 1,
            "images_per_s": n_train * epochs / timed, "s_per_epoch": timed / epochs,
            "test_elbo": model.history["test/elbo"][-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs (one more warms up)")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--batches", default="100,1000")
    parser.add_argument("--decoders", default="transform,spatial")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [run(d, int(b), args.epochs, args.n, args.accelerator, args.precision, args.compile)
            for d in args.decoders.split(",") for b in args.batches.split(",")]
    device = (torch.cuda.get_device_name() if args.accelerator in ("cuda", "gpu")
              else f"{platform.processor() or platform.machine()}, {args.threads} threads")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "vae_throughput.json").write_text(json.dumps({"device": device, "rows": rows}, indent=2))
    print(f"device: {device}; torch {torch.__version__}")
    print("| decoder | batch | images/s | s/epoch | test ELBO |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['decoder']} | {r['batch']} | {r['images_per_s']:.0f} | {r['s_per_epoch']:.2f} | "
              f"{r['test_elbo']:.1f} |")


if __name__ == "__main__":
    main()

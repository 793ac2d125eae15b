"""Write tests/data/saved_models: one tiny trained model per registered family, saved by the
code of the commit this runs on, with its encodings of fixed inputs (expected.npz), so later
code must load them and encode identically (tests/test_saved_models.py).

Run from the repository root: ``python tests/scripts/make_saved_models.py`` (it refuses to
overwrite an existing folder; these files record an old on-disk format, never regenerate them
to make a failing test pass).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentatlas.models import get_model, list_models
from latentatlas.models.registry import capabilities, registered

OUT = Path(__file__).resolve().parents[1] / "data" / "saved_models"
SHAPE = (8, 8)


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=False)
    x = np.random.default_rng(0).random((12, *SHAPE)).astype(np.float32)
    y = np.arange(12) % 3
    expected: dict[str, np.ndarray] = {"x": x}
    for name in sorted(list_models()):
        example = registered(name).example
        model = get_model(name, SHAPE, seed=0, hidden=8, latent_dim=2, **example)
        labels = {"y": y} if capabilities(name, example).needs_labels else {}
        model.fit(x, **labels, epochs=1, batch_size=12, seed=0, progress=False, test_fraction=0.0)
        model.save(OUT / name)
        for i, member in enumerate(getattr(model, "members", [model])):
            latents = member.encode(x)
            expected[f"{name}/{i}/mean"] = latents.mean
            expected[f"{name}/{i}/names"] = np.array(latents.names)
    np.savez(OUT / "expected.npz", **expected)


if __name__ == "__main__":
    main()

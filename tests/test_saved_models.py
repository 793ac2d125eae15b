"""Models saved by an earlier version still load and encode exactly as they did.

tests/data/saved_models holds one tiny trained model per family, written (with
tests/scripts/make_saved_models.py) by the code before the fit-protocol refactor of issue 18,
and its encodings of fixed inputs. A change of the on-disk format, of a config field's
meaning or of the latent order makes this fail.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentatlas.models import list_models, load_model

SAVED = Path(__file__).resolve().parent / "data" / "saved_models"
FAMILIES = sorted(p.name for p in SAVED.iterdir() if p.is_dir())


def test_every_saved_family_is_still_registered() -> None:
    assert FAMILIES and set(FAMILIES) <= set(list_models())


@pytest.mark.parametrize("name", FAMILIES)
def test_a_saved_model_loads_and_encodes_as_when_it_was_saved(name: str) -> None:
    expected = np.load(SAVED / "expected.npz")
    model = load_model(SAVED / name)
    members = list(getattr(model, "members", [model]))
    assert len(members) == sum(k.startswith(f"{name}/") and k.endswith("/mean")
                               for k in expected.files)
    for i, member in enumerate(members):
        latents = member.encode(expected["x"])
        assert latents.names == expected[f"{name}/{i}/names"].tolist()
        np.testing.assert_allclose(latents.mean, expected[f"{name}/{i}/mean"], rtol=0, atol=1e-6)

"""Shared test set-up: small thread count, fixed seeds, the path to the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# The test models are small: on 2 cores a second thread mostly adds hand-offs, and on a shared
# machine it made them several times slower.
torch.set_num_threads(1)



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow run only with LATENTATLAS_SLOW=1 (the suite stays a few minutes)."""
    if os.environ.get("LATENTATLAS_SLOW"):
        return
    skip = pytest.mark.skip(reason="slow; set LATENTATLAS_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the calling test when the file is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} not present (it lives in ../shared/data beside the repo)")
    return path

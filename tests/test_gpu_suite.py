"""benchmarks/gpu_suite.sh runs end to end (toy sizes, on the CPU) and writes its JSON, so
the script is known to work before a GPU is at hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not os.environ.get("LATENTATLAS_SLOW"),
                    reason="the whole GPU suite at toy size in a fresh process: ~10 s alone, "
                           "80 s on the shared 2 cores; set LATENTATLAS_SLOW=1")
def test_gpu_suite_cpu_smoke(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--cpu-smoke",
                           "--out", str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["meta"]["cpu_smoke"] and doc["meta"]["device"] == "cpu"
    assert doc["meta"]["sections_done"] == ["atoms", "ensemble", "rvae", "spectral"]
    runs = doc["rvae"]
    assert len(runs) == 16
    measured = [r for r in runs if not r["compile"]]
    assert all(r["images_per_s"] > 0 and "error" not in r for r in measured)
    assert {(r["decoder"], r["batch"], r["precision"]) for r in measured} == {
        (d, b, p) for d in ("spatial", "transform") for b in (100, 1000)
        for p in ("32-true", "bf16-mixed")}
    assert all("torch.compile" in r["skipped"] for r in runs if r["compile"])
    assert [r["name"] for r in doc["spectral"]] == ["spectral pca", "spectral kmeans",
                                                    "spectral nmf"]
    assert all(r["speedup"] > 0 for r in doc["spectral"])
    assert doc["ensemble"]["eight_over_one"] > 0 and doc["atoms"]["atoms"] > 10

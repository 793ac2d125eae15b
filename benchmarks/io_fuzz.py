"""Fuzz every reader of latentatlas.io for a while and record what happens (issue 15).

Each format starts from small generated files and, when present, the real files in
../shared/data; every mutant is loaded in a worker process whose address space is capped at
1 GiB above its start-up size and whose every call has a 10 s limit (tests/io_fuzzer.py).
Outcomes: dataset, loaderror (the two allowed), other (a raw exception), hang, crash.

    PYTHONPATH=src python benchmarks/io_fuzz.py --seconds 180 --seed 7

Writes benchmarks/results/io_fuzz.json and prints a markdown table; inputs that failed are
written to benchmarks/out/io_fuzz_failures/ (promote small ones to tests/data/io_regressions/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import io_fuzzer  # noqa: E402


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine()
    m = re.search(r"model name\s*:\s*(.+)", text)
    return m.group(1).strip() if m else platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="per format")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--formats", nargs="*", default=list(io_fuzzer.FORMATS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/io_fuzz.json")
    args = parser.parse_args()

    failures_dir = ROOT / "benchmarks/out/io_fuzz_failures"
    failures_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with io_fuzzer.Worker() as worker:
        for fmt in args.formats:
            report = io_fuzzer.fuzz(fmt, args.seconds, seed=args.seed, worker=worker)
            for failure in report.failures:
                safe = failure.name.replace(":", "_").replace(" ", "_")
                (failures_dir / safe).write_bytes(failure.data)
                (failures_dir / (safe + ".txt")).write_text(
                    f"{failure.outcome.kind}: {failure.outcome.detail}\n")
            row = report.summary()
            generated = fmt not in ("dm3", "dm4", "emd")  # rosettasciio cannot write these
            row["seeds"] = [p.name for p in io_fuzzer.real_seeds(fmt)] + (
                ["(generated)"] if generated else [])
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("format", "inputs", "outcomes",
                                                  "extra_rss_bytes_worst")}), flush=True)
    meta = {
        "command": " ".join(["python", "benchmarks/io_fuzz.py", *sys.argv[1:]]),
        "started": started,
        "seconds_per_format": args.seconds,
        "seed": args.seed,
        "memory_cap": "RLIMIT_AS = worker start-up size + 1 GiB",
        "time_limit_s": 10,
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))

    print("\n| format | inputs | Dataset | LoadError | other | hang | crash | worst peak RSS | "
          "worst rise in one call |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["outcomes"]
        assert isinstance(c, dict)
        print(f"| {r['format']} | {r['inputs']} | {c.get('dataset', 0)} | "
              f"{c.get('loaderror', 0)} | {c.get('other', 0)} | {c.get('hang', 0)} | "
              f"{c.get('crash', 0)} | {int(r['peak_rss_bytes_worst']) / 2**20:.0f} MiB | "
              f"{int(r['extra_rss_bytes_worst']) / 2**20:.0f} MiB |")


if __name__ == "__main__":
    main()

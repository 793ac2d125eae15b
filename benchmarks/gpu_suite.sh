#!/usr/bin/env bash
# The GPU figures of latentatlas in one run, under 8 minutes on one GPU (issue 20):
# rVAE throughput (spatial/transform decoder, batch 100/1000, fp32/bf16-mixed, with and
# without torch.compile), the ensemble of 8 vs one, PCA/NMF/k-means vs scikit-learn on a
# 256 x 256 x 1024 cube, DCNN atom-finder inference on 2048 x 2048.
# Writes benchmarks/results/gpu_suite.json (section by section).
#
#   bash benchmarks/gpu_suite.sh               # on a GPU machine
#   bash benchmarks/gpu_suite.sh --cpu-smoke   # toy sizes on the CPU, to check the script
#                                              # (writes gpu_suite_cpu_smoke.json)
# PYTHON selects the interpreter (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# the suite's own time guard stops at 450 s; this is the hard stop
exec timeout 480 "${PYTHON:-python}" benchmarks/gpu_suite.py "$@"

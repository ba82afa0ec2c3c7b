#!/usr/bin/env bash
# The device check of issue 20, prepared for a machine with an NVIDIA GPU (one run, about 10 minutes):
#   bash benchmarks/gpu_check.sh [WORKDIR]
# 1. a venv with onnxruntime-gpu instead of onnxruntime (and the export extra for the references);
# 2. the provider tests (tests/test_devices.py: same labels as the CPU, logits within 1e-3), which skip on CPU;
# 3. bench_speed on the CPU and on CUDA, fp32, same images and models, agreement with the CPU line by line.
# The Markdown report lands in WORKDIR/speed-report.md: copy its rows into benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-/tmp/dfgpu}
python3 -m venv "$WORK/venv"
. "$WORK/venv/bin/activate"
pip install --quiet ".[test]"
pip uninstall --quiet -y onnxruntime
pip install --quiet onnxruntime-gpu timm ultralytics torch torchvision
deepfaune --version   # must say: providers: ...CUDA...; --device auto uses cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python -m pytest -q tests/test_devices.py
python benchmarks/bench_speed.py --images 50 --threads "$(nproc)" --device cpu cuda --skip-fast --workdir "$WORK"

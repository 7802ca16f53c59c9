#!/usr/bin/env bash
# The checks only a CUDA machine can run, as one command (a few minutes on one H100/H200):
# the GPU tests (CUDA-graph replay bit-identical to the eager step, the short last batch,
# recorder frames through the side stream equal to synchronous copies) and the CUDA train
# benchmarks (steps/s of the eager and graphed default step, W recorded every step or not).
#
#   bash benchmarks/gpu_check.sh             # from anywhere; logs and JSON go to $OUT (default /tmp/gpu-check)
#
# A machine without network whose Python lacks a dependency (a GPU image without hdf5plugin)
# takes wheels from .whl/ in the repository, if there, into /tmp/site, e.g. made beforehand with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl hdf5plugin==7.1.0
# Exit code: the tests'.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! python3 -c "import hdf5plugin, h5py, transformers, tokenizers" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
    fi
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1 | tee "$out/device.txt"
command -v nvidia-smi >/dev/null && nvidia-smi >>"$out/device.txt" 2>&1

python3 -m pytest -q -p no:cacheprovider -rs tests/test_step_graph.py tests/test_recorder.py \
    -k "cuda or replayed or short_batch" 2>&1 | tee "$out/tests.log"
tests_rc=${PIPESTATUS[0]}

python3 -m pytest -q -p no:cacheprovider -s benchmarks/test_train_bench.py -k "cuda and not fp32" \
    --benchmark-columns=mean,stddev,rounds --benchmark-json="$out/train_bench.json" 2>&1 | tee "$out/bench.log"
echo "gpu_check: tests exit code $tests_rc; logs in $out"
exit "$tests_rc"

#!/usr/bin/env bash
# The invariance tests (pytest marker `invariance`) under several numerical paths, so a test that
# holds only on one CPU's kernels fails here first (docs/guide/reproducibility.md). Each path is a
# switch that makes MKL, ATen or oneDNN pick other kernels, the way another x86-64 CPU would; each
# runs with 1 and 2 threads. The tests that spawn processes (slow) run once, with 2 threads, on the
# plainest kernels: their comparison is between process counts at one path and thread count. Fails when any run
# fails or runs no test. Usage: bash .ci/numerics.sh [PYTHON] (default .venv/bin/python).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
FILES=(tests/attacks/test_square.py tests/attacks/test_apgd.py tests/attacks/test_contract.py tests/attacks/test_fab.py
       tests/attacks/test_base.py tests/attacks/test_deepfool.py tests/attacks/test_geometry.py tests/attacks/test_stream.py
       tests/models/test_inference.py tests/analysis/test_streamed.py tests/analysis/test_evaluation.py)
SPAWNING="over_processes or sharded"
PATHS=(
    "MKL_CBWR=COMPATIBLE"            # MKL's conditional-numerical-reproducibility kernels
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2" # MKL without AVX
    "MKL_ENABLE_INSTRUCTIONS=AVX2"   # MKL as on an AVX2-only CPU (AMD EPYC up to Zen 3)
    "ATEN_CPU_CAPABILITY=default"    # ATen's scalar (non-vectorised) kernels
    "ATEN_CPU_CAPABILITY=avx2"       # ATen's AVX2 kernels
    "ONEDNN_MAX_CPU_ISA=SSE41"       # oneDNN (convolutions) without AVX
)
start=$SECONDS
failed=0
run() {  # run LABEL THREADS ENV... -- PYTEST-ARGS...
    local label=$1 threads=$2; shift 2
    local env=()
    while [ "$1" != "--" ]; do env+=("$1"); shift; done
    shift
    local out
    out=$(env "${env[@]}" OMP_NUM_THREADS="$threads" PYTHONPATH=src "$PY" -m pytest -q -p no:cacheprovider -m invariance "$@" "${FILES[@]}" 2>&1)
    local rc=$? summary
    summary=$(printf '%s\n' "$out" | tail -n 1)
    if [ $rc -ne 0 ] || ! printf '%s\n' "$summary" | grep -Eq '[1-9][0-9]* passed'; then
        printf '%s\n' "$out" | tail -n 30
        echo "numerics: FAILED $label, $threads thread(s): $summary"
        failed=1
    else
        echo "numerics: $label, $threads thread(s): $summary"
    fi
}
for threads in 1 2; do
    for path in "${PATHS[@]}"; do
        run "$path" "$threads" "$path" -- -k "not ($SPAWNING)"
    done
done
run "ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE (processes)" 2 ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE -- -k "$SPAWNING"
echo "numerics: $((SECONDS - start)) s"
if [ $failed -ne 0 ]; then echo "numerics: some run failed"; exit 1; fi

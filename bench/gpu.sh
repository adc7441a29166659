#!/usr/bin/env bash
# Everything advlab checks or measures on a GPU machine, in one run (BENCHMARKS.md has the figures):
#   - the CUDA tests (tests/test_cuda.py, marker cuda), then bench/compare.py --device cuda;
#   - the robust models of issue 12 trained by the CLI on the GPU (PGD CNN on MNIST eps .3 and on
#     Fashion-MNIST eps .1, the undefended CNN), each then graded against AutoAttack on 1,000 test
#     images (bench/autoattack.py --device cuda);
#   - the adversarial-generalization study on the machine's CPU cores (--jobs), which is where
#     those tiny models train fastest;
#   - bench/scale.py throughput pinned to two cores (a quiet two-core measurement on a big machine).
#
#   bench/gpu.sh DATA OUT [SECONDS]
# DATA holds mnist/ and fashion-mnist/ (IDX files); OUT receives results.tar.gz and models.tar.gz.
# SECONDS (default 540) bounds the whole run: a job still running then is stopped, and what it
# finished is kept (the study caches each training; every log ends with the job's exit status).
# Environment: PYTHON (default python3), DEVICE (default cuda), JOBS (study workers, default 10),
# EXTRA_PYTHONPATH (e.g. a folder holding pyautoattack, foolbox, ART and torchattacks).
set -u
DATA=$(realpath "$1"); OUT=$(realpath "$2"); BUDGET=${3:-540}
PY=${PYTHON:-python3}; DEVICE=${DEVICE:-cuda}; JOBS=${JOBS:-10}
WORK=$(mktemp -d); LOGS=$WORK/logs; MODELS=$WORK/models
mkdir -p "$LOGS" "$MODELS" "$OUT"
export PYTHONPATH="$PWD/src${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}" PYTHONUNBUFFERED=1 ADVLAB_SHARED_DATA="$DATA" \
       ADVLAB_TEST_DEVICE="$DEVICE" OMP_NUM_THREADS=1
END=$(( $(date +%s) + BUDGET ))
left() { echo $(( END - $(date +%s) > 1 ? END - $(date +%s) : 1 )); }
# run NAME COMMAND...: the command under the remaining budget, output to logs/NAME.log
run() { local name=$1; shift; echo "\$ $*" >> "$LOGS/$name.log"; local t0=$(date +%s)
        timeout "$(left)" "$@" >> "$LOGS/$name.log" 2>&1; echo "exit $? after $(( $(date +%s) - t0 )) s" >> "$LOGS/$name.log"; }

{ date -u; echo "cpus: $(getconf _NPROCESSORS_ONLN) online, $(nproc) usable"; nvidia-smi 2>&1 | head -15; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"; } > "$LOGS/machine.log" 2>&1

( run tests $PY -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py
  run compare $PY bench/compare.py --device "$DEVICE" --skip strength --images 1000 --repeats 3 ) &

# cnn NAME EPS DATA TRAIN-ARGS...: train the CNN on DATA, then grade it against AutoAttack at EPS
cnn() { local name=$1 eps=$2 data=$3; shift 3
        run "train-$name" $PY -m advlab train cnn --no-progress --device "$DEVICE" --data "$data" --data-dir "$DATA/$data" --seed 0 \
            --out "$MODELS/$name.safetensors" "$@"
        run "autoattack-$name" $PY bench/autoattack.py "$MODELS/$name.safetensors" --data "$data" --data-dir "$DATA/$data" \
            --n 1000 --eps "$eps" --device "$DEVICE" --batch-size 1000 --step-repeats 3 --json "$LOGS/autoattack-$name.json"; }
cnn cnn-mnist-pgd-eps0.3 0.3 mnist --epochs 60 --adversarial pgd --eps 0.3 --steps 10 &
cnn cnn-fashion-pgd-eps0.1 0.1 fashion-mnist --epochs 10 --adversarial pgd --eps 0.1 --steps 10 &
cnn cnn-mnist 0.1 mnist &

run generalization $PY -m advlab reproduce adversarial-generalization --no-progress --data-dir "$DATA/mnist" --jobs "$JOBS" --epochs 10 \
    --out "$WORK/adversarial-generalization" &

if [ "$(getconf _NPROCESSORS_ONLN)" -ge 16 ]; then
  run throughput taskset -c 14,15 $PY bench/scale.py throughput --data-dir "$DATA/fashion-mnist" --images 10000 --repeats 2 &
fi

wait
tar czf "$OUT/results.tar.gz" -C "$WORK" --exclude=checkpoints logs adversarial-generalization
tar czf "$OUT/models.tar.gz" -C "$WORK" models
tail -n 3 "$LOGS"/*.log

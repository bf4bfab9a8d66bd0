#!/usr/bin/env bash
# A short GPU session in one command: the GPU tests, the generative codecs' speed on the GPU, and both `gpu`
# training presets under a wall-clock limit (max_time_s), with the GPU's load sampled every second.
#
#     bash benchmarks/bench_gpu.sh SHARDS_DIR OUT_DIR
#
# Then `python benchmarks/gpu_report.py OUT_DIR` (also run at the end here) prints images/s and GPU
# utilisation per phase. The shards should be resized ones (`gencomp shard --max-short-side 512`): the loader
# then decodes small JPEGs, as it would on a real GPU box.
#
# Environment: PYTHON (python3); GAN_S, ENC_S, VAEGAN_S: seconds of training for the GAN's adversarial phase,
# its encoder phase and the VAE-GAN (110, 35, 90); TESTS_S, CODECS_S: time limits of those steps (150, 60);
# EXTRA: more `--set key=value` for every training run (e.g. to try the script on a CPU with tiny models).
# Every step runs under `timeout` and the script goes on after a failure, so one broken step still leaves
# the others' numbers.
set -u
DATA=$1
OUT=$2
PY=${PYTHON:-python3}
GAN_S=${GAN_S:-110}
ENC_S=${ENC_S:-35}
VAEGAN_S=${VAEGAN_S:-90}
EXTRA=${EXTRA:-}
RUNS=$OUT/runs
LOG=$OUT/log.txt
mkdir -p "$RUNS"
export PYTHONUNBUFFERED=1

stamp() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
    nvidia-smi dmon -s um -d 1 -o T >"$OUT/dmon.txt" 2>&1 &
    DMON=$!
    trap 'kill $DMON 2>/dev/null' EXIT
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
    | tee -a "$LOG"

train() {  # train NAME SECONDS KIND RUN_DIR ARGS...: one `gencomp train` under max_time_s, a hard limit beside
    local name=$1 seconds=$2 kind=$3 dir=$4 status start=$SECONDS
    shift 4
    stamp "begin $name"
    # shellcheck disable=SC2086  # EXTRA is a list of words
    timeout $((seconds + 120)) $PY -m gencomp.cli train "$kind" --out "$dir" --data "$DATA" --preset gpu \
        --set "max_time_s=$seconds" "$@" $EXTRA >"$OUT/$name.txt" 2>&1
    status=$?
    stamp "end $name (exit $status)"
    if [ "$status" != 0 ] && [ ! -f "$dir/checkpoint.pt" ] && [ $((SECONDS - start)) -lt 90 ]; then
        # an early crash before any checkpoint (a torch.compile failure, say): measure without compiling
        tail -20 "$OUT/$name.txt" | tee -a "$LOG"
        rm -rf "$dir"
        stamp "begin ${name}_eager"
        # shellcheck disable=SC2086
        timeout $((seconds + 120)) $PY -m gencomp.cli train "$kind" --out "$dir" --data "$DATA" --preset gpu \
            --set "max_time_s=$seconds" "$@" $EXTRA --set compile=false >"$OUT/${name}_eager.txt" 2>&1
        stamp "end ${name}_eager (exit $?)"
        name=${name}_eager
    fi
    cp "$dir/train_summary.json" "$OUT/$name.summary.json" 2>/dev/null
}

# most wanted first: the presets' images/s and GPU load, then the tests, the codecs and the encoder phase
train gan "$GAN_S" gan "$RUNS/gan" --set encoder_steps=0
train vaegan "$VAEGAN_S" vaegan "$RUNS/vaegan"

stamp "begin tests"
timeout "${TESTS_S:-150}" $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py >"$OUT/tests.txt" 2>&1
stamp "end tests (exit $?)"
tail -5 "$OUT/tests.txt" | tee -a "$LOG"

stamp "begin codecs"
timeout "${CODECS_S:-60}" $PY benchmarks/bench_codecs.py --device cuda --codecs vaegan gan-inversion \
    --steps 100 1000 --repeat 3 --json "$OUT/codecs.json" >"$OUT/codecs.txt" 2>&1
stamp "end codecs (exit $?)"

# the encoder phase: resume with steps set to the step reached, so the run goes straight to the encoder
summary=$(ls "$OUT"/gan*.summary.json 2>/dev/null | head -1)
if [ -n "$summary" ]; then
    reached=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['step'])" "$summary")
    eager=()
    case $summary in *_eager*) eager=(--set compile=false) ;; esac
    train gan_encoder "$ENC_S" gan "$RUNS/gan" --resume --set "steps=$reached" "${eager[@]}"
fi

$PY benchmarks/gpu_report.py "$OUT" | tee "$OUT/report.md"

#!/usr/bin/env bash
# One command for a lent GPU: train the models worth shipping, side by side, under a wall-clock budget, check them
# on held-out images there, and bring back half-precision model files ready for gencomp/assets.
#
#     bash benchmarks/gpu_train_ship.sh SHARDS_ROOT OUT_DIR
#
# SHARDS_ROOT holds one shard set per domain (`gencomp domains`, params.yaml `domains`): photos/, faces/,
# aerial/ (missing ones are skipped). The runs share the GPU at once (small models leave an H200 mostly idle, so
# running them together costs each little); JOBS picks among them:
#   vaegan-photos        the shipped VAE-GAN's architecture with the blurred sub-pixel decoder, started from
#                        the shipped weights (--init-from vaegan-default), 256-px crops
#   vaegan-photos-hyper  the same, with the mean-scale hyperprior entropy model and its checkerboard context
#                        (from the shipped model's, which has both); 6 steps in 10 train C = 28, the C the codec
#                        ships (channel_weights; its first CPU run gained +0.12 dB on Kodak, the run before it,
#                        with equal draws, +0.06)
#   vaegan-photos-w96    a wider one (width 96) from scratch, the same recipe otherwise
#   vaegan-faces, vaegan-aerial   the first one's recipe on each domain at its native 128 px, from the shipped weights
#   gan-faces, gan-aerial          a GAN per domain at 128 px, one tile per image (the poster's setting), trained
#                        inversion-aware (recon_weight RECON_WEIGHT, 10: the encoder and the generator also learn
#                        G(E(x)) ~ x on the real batch)
#   gan-faces-r1         gan-faces with recon_weight 1
# Each run has two phases. Phase 1 (PHASE1_S seconds) trains at the full learning rate with no end in sight; phase 2
# resumes with `steps` set so that the cosine schedule ends about PHASE2_S seconds later, at the speed phase 1
# measured (for the GANs, phase 2 trains the inversion encoder against the frozen generator). Wall time is
# PHASE1_S + PHASE2_S plus two start-ups and validations, then the check (benchmarks/gpu_check.py, ~1 min): give a
# device call at least PHASE1_S + PHASE2_S + 4 min. After every phase the run's model file is written to OUT_DIR.
# OUT_DIR receives the half-precision model files (<run>.pt), check.json and logs.tar.gz; the runs themselves
# (checkpoints included) stay in WORK_DIR (default OUT_DIR/work). A run whose folder already holds a checkpoint
# (a call cut short, or an earlier call with the same OUT_DIR) is continued from it, not started afresh, so
# calling the script again accumulates training.
#
# Environment: PYTHON (python3); WHEELS (a folder of wheels for what the host lacks, e.g. constriction and
# pydantic: installed with --no-deps --no-index under WORK_DIR; the script stops at once if those packages are
# missing); PHASE1_S, PHASE2_S (270, 90); WORKERS (loader workers per run, 2); THREADS (torch CPU threads per run,
# 2: six runs at torch's default of one thread per core thrashed a 16-core host, and the validations, whose entropy
# coding runs on the CPU, then took minutes); RESUME_ONLY (non-empty: skip phase 1 and anneal the runs WORK_DIR
# holds from their checkpoints; what a cut-short first call needs); CHECK_IMAGES (24); JOBS (names of the runs to
# do, e.g. "gan-faces vaegan-photos"; all by default); RECON_WEIGHT (10); KODAK_DIR (photo VAE-GANs are also
# checked on these images); CHECK_TIMEOUT (150 s; the model files are written before any check runs, so a cut
# check loses numbers, not models); EXTRA_VAEGAN, EXTRA_GAN: more `--set key=value` words for every run of that
# kind (tiny models to try the script on a CPU first); NPROC (processes per run, 1: more start each run under
# torchrun as DDP, what a CPU-only machine needs to use its cores, benchmarks/cpu_train_ship.sh). Every step runs
# under `timeout` and failures do not stop the others; the exit status is 1 when any phase failed.
set -u
ROOT=$1
OUT=$2
PY=${PYTHON:-python3}
P1=${PHASE1_S:-270}
P2=${PHASE2_S:-90}
WORKERS=${WORKERS:-2}
EXTRA_VAEGAN=${EXTRA_VAEGAN:-}
EXTRA_GAN=${EXTRA_GAN:-}
WORK=${WORK_DIR:-$OUT/work}  # runs, checkpoints and logs; OUT gets only what ships (a lent GPU returns 8 files)
RUNS=$WORK/runs
LOG=$WORK/log.txt
mkdir -p "$RUNS" "$OUT"
export PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
    # a lent device reaches no package index: install what its image lacks from local wheels, never resolving
    # dependencies over the network (pip would retry name resolution for minutes)
    $PY -m pip install -q --no-deps --no-index --target "$WORK/site" "$WHEELS"/*.whl >"$WORK/pip.txt" 2>&1 \
        || { echo "installing $WHEELS failed:"; tail -5 "$WORK/pip.txt"; exit 1; }
    export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
$PY -c "import constriction, pydantic, torch" || { echo "missing packages: set WHEELS to a folder of wheels"; exit 1; }

stamp() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG"; }
field() { $PY -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# steps per second over the phase just run (its start-up included: a conservative estimate)
rate() { $PY -c "import json,sys; s=json.load(open(sys.argv[1])); print(s['steps_run'] / max(s['elapsed_s'], 1e-9))" "$1"; }

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/gpu.txt"
    nvidia-smi dmon -s um -d 5 -o T >"$WORK/dmon.txt" 2>&1 &
    DMON=$!
    trap 'kill $DMON 2>/dev/null' EXIT
fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" \
    | tee -a "$LOG"

COMMON=(--preset gpu --set compile=false --set "num_workers=$WORKERS" --set "threads=${THREADS:-2}" --set val_every=1000000000 --set val_batches=2
        --set checkpoint_every=1000000000)
# the shipped VAE-GAN's rate point (rate_lambda 0.004), no adversarial term (its target is fidelity), blurred decoder
VAEGAN_RECIPE=(--set rate_lambda=0.004 --set msssim_weight=0.0 --set adv_start=1000000000 --set upsample=subpixel-blur
               --set d_width=32 --set kl_weight=0.0001)
GAN_RECIPE=(--set tile=128 --set g_width=24 --set d_width=24 --set e_width=24 --set batch_size=64
            --set crops_per_image=1 --set downscale_to=128 --set "recon_weight=${RECON_WEIGHT:-10}")

LAUNCH=("$PY" -m gencomp.cli)
if [ "${NPROC:-1}" -gt 1 ]; then
    LAUNCH=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" -m gencomp.cli)
fi

train() {  # train LOGNAME SECONDS KIND RUN_DIR ARGS...
    local name=$1 seconds=$2 kind=$3 dir=$4
    shift 4
    stamp "begin $name"
    # shellcheck disable=SC2086  # EXTRA_* are lists of words
    timeout $((seconds + 150)) "${LAUNCH[@]}" train "$kind" --out "$dir" "${COMMON[@]}" \
        --set "max_time_s=$seconds" "$@" >"$WORK/$name.txt" 2>&1
    local status=$?
    stamp "end $name (exit $status)"
    [ $status -eq 0 ] || echo "$name (exit $status, log $WORK/$name.txt)" >>"$WORK/failed.txt"
    tail -3 "$WORK/$name.txt" >>"$LOG"
    # the model as it stands goes to OUT at once: a device call cut short still returns every finished phase
    [ -f "$dir/model.pt" ] && $PY benchmarks/gpu_check.py "$RUNS" "$ROOT" "$OUT" --copy-run "$(basename "$dir")" \
        >>"$LOG" 2>&1
}

continuing() {  # --resume when run NAME has a checkpoint to continue
    [ -f "$RUNS/$1/checkpoint.pt" ] && echo --resume
}

vaegan_job() {  # vaegan_job NAME DATA ARGS...
    local name=$1 data=$2 reached steps
    shift 2
    [ -d "$data" ] || { stamp "skip $name: no $data"; return; }
    if [ -n "${RESUME_ONLY:-}" ]; then  # phase 1 was cut short: anneal from its checkpoint
        reached=$(tail -1 "$RUNS/$name/metrics.jsonl" | $PY -c "import json,sys; print(json.load(sys.stdin)['step'])")
        # shellcheck disable=SC2086
        train "$name-2" "$P2" vaegan "$RUNS/$name" --data "$data" --resume "${VAEGAN_RECIPE[@]}" "$@" \
            --set "steps=$((reached + reached * P2 * 9 / (P1 * 10)))" $EXTRA_VAEGAN
        return
    fi
    # shellcheck disable=SC2086,SC2046  # a checkpoint there: phase 1 continues it
    train "$name-1" "$P1" vaegan "$RUNS/$name" --data "$data" $(continuing "$name") "${VAEGAN_RECIPE[@]}" "$@" \
        --set steps=100000000 $EXTRA_VAEGAN
    [ -f "$RUNS/$name/train_summary.json" ] || return
    reached=$(field "$RUNS/$name/train_summary.json" step)
    steps=$($PY -c "print(int($reached + 0.9 * $P2 * $(rate "$RUNS/$name/train_summary.json")) + 1)")
    # shellcheck disable=SC2086
    train "$name-2" "$P2" vaegan "$RUNS/$name" --data "$data" --resume "${VAEGAN_RECIPE[@]}" "$@" \
        --set "steps=$steps" $EXTRA_VAEGAN
}

gan_job() {  # gan_job NAME DATA ARGS...
    local name=$1 data=$2 reached encoder_steps
    shift 2
    [ -d "$data" ] || { stamp "skip $name: no $data"; return; }
    if [ -n "${RESUME_ONLY:-}" ]; then
        reached=$(tail -1 "$RUNS/$name/metrics.jsonl" | $PY -c "import json,sys; print(json.load(sys.stdin)['step'])")
        # shellcheck disable=SC2086
        train "$name-2" "$P2" gan "$RUNS/$name" --data "$data" --resume "${GAN_RECIPE[@]}" "$@" \
            --set "steps=$reached" --set "encoder_steps=$((reached * P2 * 18 / (P1 * 10) + 1))" $EXTRA_GAN
        return
    fi
    # shellcheck disable=SC2086,SC2046
    train "$name-1" "$P1" gan "$RUNS/$name" --data "$data" $(continuing "$name") "${GAN_RECIPE[@]}" "$@" \
        --set steps=100000000 --set encoder_steps=0 $EXTRA_GAN
    [ -f "$RUNS/$name/train_summary.json" ] || return
    reached=$(field "$RUNS/$name/train_summary.json" step)
    # an encoder step costs about half an adversarial one (no discriminator); max_time_s stops it in any case
    encoder_steps=$($PY -c "print(int(1.8 * $P2 * $(rate "$RUNS/$name/train_summary.json")) + 1)")
    # shellcheck disable=SC2086
    train "$name-2" "$P2" gan "$RUNS/$name" --data "$data" --resume "${GAN_RECIPE[@]}" "$@" \
        --set "steps=$reached" --set "encoder_steps=$encoder_steps" $EXTRA_GAN
}

wanted() { [ -z "${JOBS:-}" ] || [[ " $JOBS " == *" $1 "* ]]; }

wanted vaegan-photos && vaegan_job vaegan-photos "$ROOT/photos" --init-from vaegan-default --set width=64 --set crop=256 \
    --set batch_size=16 --set lr=1e-4 --set warmup_steps=100 &
wanted vaegan-photos-hyper && vaegan_job vaegan-photos-hyper "$ROOT/photos" --init-from vaegan-default --set width=64 \
    --set crop=256 --set batch_size=16 --set lr=1e-4 --set warmup_steps=100 --set entropy_model=hyperprior \
    --set hyper_context=checkerboard --set "channel_weights=[6,1,1,1,1]" &
wanted vaegan-photos-w96 && vaegan_job vaegan-photos-w96 "$ROOT/photos" --set width=96 --set crop=256 --set batch_size=16 --set lr=3e-4 \
    --set warmup_steps=500 &
wanted vaegan-faces && vaegan_job vaegan-faces "$ROOT/faces" --init-from vaegan-default --set width=64 --set crop=128 --set batch_size=32 \
    --set crops_per_image=1 --set downscale_to=128 --set lr=1e-4 --set warmup_steps=100 &
wanted vaegan-aerial && vaegan_job vaegan-aerial "$ROOT/aerial" --init-from vaegan-default --set width=64 --set crop=128 --set batch_size=32 \
    --set crops_per_image=1 --set downscale_to=128 --set lr=1e-4 --set warmup_steps=100 &
wanted gan-faces && gan_job gan-faces "$ROOT/faces" &
wanted gan-faces-r1 && gan_job gan-faces-r1 "$ROOT/faces" --set recon_weight=1 &
wanted gan-aerial && gan_job gan-aerial "$ROOT/aerial" &
wait
stamp "training done"

# shellcheck disable=SC2046  # no --kodak without KODAK_DIR
timeout "${CHECK_TIMEOUT:-150}" $PY benchmarks/gpu_check.py "$RUNS" "$ROOT" "$OUT" --max-images "${CHECK_IMAGES:-24}" \
    $([ -n "${KODAK_DIR:-}" ] && echo --kodak "$KODAK_DIR") >"$WORK/check.txt" 2>&1
stamp "check done (exit $?)"
tail -40 "$WORK/check.txt" | tee -a "$LOG"
stamp "all done"
# logs, summaries and metrics in one archive beside the model files and check.json
tar -czf "$OUT/logs.tar.gz" -C "$WORK" --exclude='*.pt' --exclude='dvclive' . 2>/dev/null
if [ -s "$WORK/failed.txt" ]; then  # the others' files came back; say which phases did not finish
    echo "failed:"; cat "$WORK/failed.txt"; exit 1
fi

#!/usr/bin/env bash
# The CPU recipe: about 2.5 hours of a 2-core machine spent on the model that ships, then its check.
#
#     bash benchmarks/cpu_train_ship.sh SHARDS_ROOT OUT_DIR        # KODAK_DIR=../shared/data/kodak to score Kodak
#
# It is benchmarks/gpu_train_ship.sh with CPU settings: one run (JOBS, default vaegan-photos-hyper: the shipped
# VAE-GAN's autoencoder, started from its weights, trained jointly with the mean-scale hyperprior), its two
# processes under torchrun (DDP, one thread each: on 2 cores two processes do more work than one process with two
# threads, whose OpenMP threads spin-wait for each other), 8 crops of 256 px per process and step (16 per step, as
# on the GPU). Phase 1 trains at the full learning rate for PHASE1_S seconds (900: long enough to measure the speed,
# which a 300-s phase, mostly start-up, underestimates), phase 2 anneals for about PHASE2_S (7,800): the CPU runs
# gained during their anneal and not at the full rate (BENCHMARKS.md, "The CPU recipe as one cosine"), so most of
# the time goes to one long cosine. Both resume (RESUME_ONLY) and every phase's end writes the model file to
# OUT_DIR. The check then scores the run against the shipped model on the photo shards' test split and, with
# KODAK_DIR, on Kodak: ship the file (scripts/ship_model.py) only when it wins there. AMP (default: bf16 on a CPU
# with AMX or AVX512-BF16, where it takes about 2.6 times the steps of fp32 in the same time; auto, i.e. fp32,
# elsewhere).
set -u
export NPROC=${NPROC:-2} THREADS=${THREADS:-1} WORKERS=${WORKERS:-0}
export JOBS=${JOBS:-vaegan-photos-hyper} PHASE1_S=${PHASE1_S:-900} PHASE2_S=${PHASE2_S:-7800}
export CHECK_TIMEOUT=${CHECK_TIMEOUT:-1200}
# batch_size is per process under DDP; the recipe's validations are two batches at each phase's end
AMP=${AMP:-$(${PYTHON:-python3} -c "from gencomp.train.runtime import cpu_has_native_bf16 as n; print('bf16' if n() else 'auto')")}
export EXTRA_VAEGAN="--set batch_size=$((16 / NPROC)) --set amp=$AMP ${EXTRA_VAEGAN:-}"
exec bash "$(dirname "$0")/gpu_train_ship.sh" "$@"

#!/usr/bin/env bash
# Paired evaluation on LOL (SPEC §7): the enhancer alone (ori/) and with the memory (mem/).
#   bash test_script.sh [lol_v1|lol_v2]
# Every setting is a variable below (edit it here, or set it in the environment: DEVICE=cpu bash ...).
# SMOKE=1 bash test_script.sh: the whole path on built demo data, CPU (it trains the smoke enhancer and
# memory first, with the two training scripts' SMOKE=1, when they are missing).
set -euo pipefail
cd "$(dirname "$0")"

# ===================================== settings ====================================================
# --- inputs: paired folders (low/ + high/, or Low/ + Normal/), or any folder of images ---
LOL_V1_TEST=${LOL_V1_TEST:-datasets/data/LOL/eval15}
LOL_V2_TEST=${LOL_V2_TEST:-datasets/data/LOL-v2/Real_captured/Test}
# --- weights: the enhancer and its memory (from train_enhancer_script.sh and train_memory_script.sh) ---
RUNS=${RUNS:-log}                                    # the training scripts' SAVE_DIR
ENHANCER_V1=${ENHANCER_V1:-$RUNS/LOL_v1/models/model_best.pth}
MEMORY_V1=${MEMORY_V1:-$RUNS/LOL_v1_mem/models/memory_best.pth}   # empty: the enhancer alone
ENHANCER_V2=${ENHANCER_V2:-$RUNS/LOL_v2/models/model_best.pth}
MEMORY_V2=${MEMORY_V2:-$RUNS/LOL_v2_mem/models/memory_best.pth}
ARCH=${ARCH:-auto}              # auto (read from the checkpoint), dce or emnet
TOP_K=${TOP_K:-1}               # --testing_top_k: memory slots averaged
# --- outputs ---
RESULTS=${RESULTS:-results}     # results go to $RESULTS/LOL_v1/ (ori/, mem/, result.txt, results.csv, comparison.png)
SAVE_IMAGES=${SAVE_IMAGES:-1}   # 1: write the ori/ and mem/ images; 0: scores only
METRICS=${METRICS:-reference}   # PSNR/SSIM convention: reference, basicsr_rgb or basicsr_y (paper-style)
CROP_BORDER=${CROP_BORDER:-0}   # pixels left out at each edge before PSNR/SSIM
# --- how it runs ---
DEVICE=${DEVICE:-auto}          # auto, cpu, cuda, cuda:N
PRECISION=${PRECISION:-fp32}    # fp32, bf16, fp16 (CUDA)
WORKERS=${WORKERS:-}            # folder of unpaired images only: decode/encode threads (empty: 2)
TILE=${TILE:-}                  # folder of unpaired images only: tile side for DCE-Net (empty: automatic)
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
DATA=${1:-lol_v1}

# SMOKE=1: the smoke enhancer and memory of the training scripts on the demo pairs, CPU.
if [ "${SMOKE:-0}" = 1 ]; then
  export SMOKE_DIR=${SMOKE_DIR:-datasets/data-smoke}
  RUNS=$SMOKE_DIR/log LOL_V1_TEST=$SMOKE_DIR/data/LOL-demo/eval15 RESULTS=$SMOKE_DIR/results
  ENHANCER_V1=$RUNS/LOL_v1/models/model_best.pth MEMORY_V1=$RUNS/LOL_v1_mem/models/memory_best.pth
  [ -f "$MEMORY_V1" ] || SMOKE=1 PYTHON="$PYTHON" bash train_memory_script.sh lol_v1
  DATA=lol_v1 DEVICE=cpu PRECISION=fp32 WORKERS= TILE=
fi
# ====================================================================================================

case "$DATA" in
  lol_v1) INPUT=$LOL_V1_TEST ENHANCER=$ENHANCER_V1 MEMORY=$MEMORY_V1 OUT=$RESULTS/LOL_v1 ;;
  lol_v2) INPUT=$LOL_V2_TEST ENHANCER=$ENHANCER_V2 MEMORY=$MEMORY_V2 OUT=$RESULTS/LOL_v2 ;;
  *) echo "usage: $0 [lol_v1|lol_v2]" >&2; exit 2 ;;
esac
# Mode-specific flags only when they apply (lowlight_test.py refuses a flag the mode would ignore).
FLAGS=()
if [ -d "$INPUT/low" ] || [ -d "$INPUT/Low" ]; then
  FLAGS+=(--metrics "$METRICS" --crop_border "$CROP_BORDER")
  [ -z "$MEMORY" ] || FLAGS+=(--mem_weights "$MEMORY" --testing_top_k "$TOP_K")
  [ "$SAVE_IMAGES" != 1 ] || FLAGS+=(--save_images)
else
  FLAGS+=(${WORKERS:+--workers "$WORKERS"} ${TILE:+--tile "$TILE"})
fi

"$PYTHON" lowlight_test.py --device "$DEVICE" --precision "$PRECISION" --input_dir "$INPUT" \
  --weights "$ENHANCER" --arch "$ARCH" --result_dir "$OUT" ${FLAGS[@]+"${FLAGS[@]}"}

#!/usr/bin/env bash
# External memory on a frozen enhancer (SPEC §6):  bash train_memory_script.sh [lol_v1|lol_v2]
# Every setting is a variable below (edit it here, or set it in the environment: DEVICE=cpu bash ...).
# SMOKE=1 bash train_memory_script.sh: the whole path on built demo data, tiny sizes, CPU, no download
# (it trains the enhancer first with SMOKE=1 bash train_enhancer_script.sh lol_v1 when that is missing).
set -euo pipefail
cd "$(dirname "$0")"

# ===================================== settings ====================================================
# --- data ---
LOL_V1=${LOL_V1:-datasets/data/LOL}                    # our485/{low,high}, eval15/{low,high}
LOL_V2=${LOL_V2:-datasets/data/LOL-v2/Real_captured}   # Train/{Low,Normal}, Test/{Low,Normal}
# --- the frozen enhancer (from train_enhancer_script.sh) and where the memory goes ---
SAVE_DIR=${SAVE_DIR:-log}                              # runs go to $SAVE_DIR/LOL_v1_mem/, $SAVE_DIR/LOL_v2_mem/
ENHANCER_V1=${ENHANCER_V1:-$SAVE_DIR/LOL_v1/models/model_best.pth}
ENHANCER_V2=${ENHANCER_V2:-$SAVE_DIR/LOL_v2/models/model_best.pth}
# --- the memory ---
QUERY=${QUERY:-resnet18}        # resnet18 (the reference; needs $TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth)
                                # or enhancer (the frozen enhancer's own features; nothing to download)
MEM_SIZE=${MEM_SIZE:-9000}      # memory slots
KEY_DIM=${KEY_DIM:-}            # --K_feat_dim; empty: the query's (512 for ResNet-18)
POOL=${POOL:-1}                 # --pooling_size p: values are the ground truth pooled to p x p (3·p² numbers)
THRES=${THRES:-1e-5}            # colour distance below which a query merges into a slot
TOP_K=${TOP_K:-1}               # --testing_top_k: slots averaged when reading at validation
EPOCHS=${EPOCHS:-8000}          # --nepoch
BATCH=${BATCH:-128}             # crops per update (the incomplete last batch is dropped)
PATCH=${PATCH:-128}             # --train_ps, crop side
# --- how it runs ---
DEVICE=${DEVICE:-auto}          # auto, cpu, cuda, cuda:N
AMP=${AMP:-off}                 # precision: off (fp32), bf16, fp16 (CUDA)
WORKERS=${WORKERS:-2}           # data-loading processes
NPROC=${NPROC:-1}               # processes (GPUs); > 1 launches torchrun
SEED=${SEED:-}                  # --random_seed; empty: the stage's default (1234)
RESTART=${RESTART:-0}           # 1: start the run afresh (--overwrite deletes its checkpoints and logs);
                                # 0: continue it when its latest checkpoint exists, else start it
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
DATA=${1:-lol_v1}

# SMOKE=1: the demo data and the enhancer script's smoke enhancer, a few updates, CPU, the enhancer query.
if [ "${SMOKE:-0}" = 1 ]; then
  export SMOKE_DIR=${SMOKE_DIR:-datasets/data-smoke}
  SAVE_DIR=$SMOKE_DIR/log LOL_V1=$SMOKE_DIR/data/LOL-demo ENHANCER_V1=$SMOKE_DIR/log/LOL_v1/models/model_best.pth
  [ -f "$ENHANCER_V1" ] || SMOKE=1 PYTHON="$PYTHON" bash train_enhancer_script.sh lol_v1
  DATA=lol_v1 QUERY=enhancer MEM_SIZE=64 EPOCHS=2 BATCH=4 PATCH=32
  DEVICE=cpu AMP=off WORKERS=0 NPROC=1
fi
# ====================================================================================================

if [ "$NPROC" -gt 1 ]; then RUN=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC" train.py)
else RUN=("$PYTHON" train.py); fi
case "$DATA" in
  lol_v1) ENHANCER=$ENHANCER_V1 TRAIN=$LOL_V1/our485 VAL=$LOL_V1/eval15 ENV=LOL_v1_mem ;;
  lol_v2) ENHANCER=$ENHANCER_V2 TRAIN=$LOL_V2/Train VAL=$LOL_V2/Test ENV=LOL_v2_mem ;;
  *) echo "usage: $0 [lol_v1|lol_v2]" >&2; exit 2 ;;
esac
# --resume only for a run whose latest checkpoint exists: a new folder starts a new run.
if [ "$RESTART" = 1 ]; then RESUME=(--overwrite)
elif [ -f "$SAVE_DIR/$ENV/models/memory_latest.pth" ]; then RESUME=(--resume)
else RESUME=(); fi

"${RUN[@]}" --stage memory --device "$DEVICE" --amp "$AMP" --num_workers "$WORKERS" ${SEED:+--random_seed "$SEED"} \
  --save_dir "$SAVE_DIR" --env "$ENV" --pretrain_weights "$ENHANCER" --train_dir "$TRAIN" --val_dir "$VAL" \
  --query "$QUERY" --mem_size "$MEM_SIZE" ${KEY_DIM:+--K_feat_dim "$KEY_DIM"} --pooling_size "$POOL" \
  --thres "$THRES" --testing_top_k "$TOP_K" --nepoch "$EPOCHS" --batch_size "$BATCH" --train_ps "$PATCH" \
  ${RESUME[@]+"${RESUME[@]}"}

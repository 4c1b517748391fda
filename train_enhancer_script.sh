#!/usr/bin/env bash
# Enhancer training:  bash train_enhancer_script.sh [scl|lol_v1|lol_v2]
#   scl     SCL-LLE: DCE-Net on Cityscapes with the contrastive/semantic/VGG losses (SPEC §3)
#   lol_v1  EMNet stage 1, supervised on LOL-v1 (SPEC §5); lol_v2: on LOL-v2 real
# Every setting is a variable below (edit it here, or set it in the environment: DEVICE=cpu bash ...).
# SMOKE=1 bash train_enhancer_script.sh [scl|lol_v1]: the whole path on built demo data, tiny sizes, CPU.
set -euo pipefail
cd "$(dirname "$0")"

# ===================================== settings ====================================================
# --- data ---
CITYSCAPES=${CITYSCAPES:-datasets/data/cityscapes}   # leftImg8bit/train/<city>/*_leftImg8bit.png (+ gtFine/ labels)
CONTRAST=${CONTRAST:-datasets/data/Contrast}         # low/ (negatives), GT/ (positives)
SEG_CKPT=${SEG_CKPT:-checkpoints/best_deeplabv3plus_mobilenet_cityscapes_os16.pth}   # DeepLab of the public port
SEG_MODEL=${SEG_MODEL:-deeplabv3plus_mobilenet}      # that checkpoint's network (--model)
SEG_STRIDE=${SEG_STRIDE:-16}                         # and its output stride (8 or 16)
LOL_V1=${LOL_V1:-datasets/data/LOL}                  # our485/{low,high}, eval15/{low,high}
LOL_V2=${LOL_V2:-datasets/data/LOL-v2/Real_captured} # Train/{Low,Normal}, Test/{Low,Normal}
# --- SCL-LLE (scl) ---
SCL_RUN=${SCL_RUN:-snapshots/scl_lle}  # run folder: Epoch<it>.pth snapshots, latest.pth, logs
SCL_ITERS=${SCL_ITERS:-50000}          # --total_itrs
SCL_BATCH=${SCL_BATCH:-2}              # images per step (per process), at least 2
SCL_CROP=${SCL_CROP:-384}              # training crop side
SCL_LR=${SCL_LR:-1e-4}                 # --lowlight_lr
SCL_WD=${SCL_WD:-1e-4}                 # --lowlight_weight_decay
SCL_CLIP=${SCL_CLIP:-0.1}              # --grad_clip_norm
SCL_SNAPSHOT_EVERY=${SCL_SNAPSHOT_EVERY:-1300}   # write Epoch<it>.pth every N iterations
SCL_LOSSES=${SCL_LOSSES:-}             # loss weight flags, e.g. "--w_seg 0 --w_segexp 0" without labels,
                                       # "--w_feat 0 --w_percep 0" without the VGG16 weights file
SCL_EVAL=${SCL_EVAL:-}                 # a paired folder (low/, high/) to score the last snapshot on; empty: none
SCL_EVAL_OUT=${SCL_EVAL_OUT:-results/scl_lle}    # where that score (result.txt) goes
# --- EMNet enhancer (lol_v1, lol_v2) ---
SAVE_DIR=${SAVE_DIR:-log}              # runs go to $SAVE_DIR/LOL_v1/, $SAVE_DIR/LOL_v2/
ARCH=${ARCH:-emnet}                    # emnet or dce
WIDTH=${WIDTH:-}                       # --embed_dim; empty: the architecture's own
EPOCHS=${EPOCHS:-800}                  # --nepoch
BATCH=${BATCH:-4}                      # pairs per step (per process)
PATCH=${PATCH:-128}                    # --train_ps, training crop side
LR=${LR:-2e-4}                         # --lr_initial (linear warm-up, then cosine to 1e-6)
WARMUP_EPOCHS=${WARMUP_EPOCHS:-3}
WEIGHT_DECAY=${WEIGHT_DECAY:-0}        # AdamW weight decay
VAL_PER_EPOCH=${VAL_PER_EPOCH:-2}      # --val_time
LOSSES=${LOSSES:---ssim_lambda 1 --lpips_lambda 1 --l1_lambda 0 --l2_lambda 0}   # LPIPS needs the AlexNet file
# --- how it runs ---
DEVICE=${DEVICE:-auto}                 # auto, cpu, cuda, cuda:N
AMP=${AMP:-off}                        # precision: off (fp32), bf16, fp16 (CUDA)
WORKERS=${WORKERS:-2}                  # data-loading processes
NPROC=${NPROC:-1}                      # processes (GPUs); > 1 launches torchrun
SEED=${SEED:-}                         # --random_seed; empty: the stage's default (1 for scl, 1234 for EMNet)
RESTART=${RESTART:-0}                  # 1: start the run afresh (--overwrite deletes its checkpoints and logs);
                                       # 0: continue it when its latest checkpoint exists, else start it
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
STAGE=${1:-scl}

# SMOKE=1: the demo data (built into $SMOKE_DIR/data when missing), a few iterations, CPU, one process.
if [ "${SMOKE:-0}" = 1 ]; then
  SMOKE_DIR=${SMOKE_DIR:-datasets/data-smoke}
  [ -d "$SMOKE_DIR/data/LOL-demo/eval15" ] || "$PYTHON" -m datasets.prepare_demo --n_crops 8 --crop_size 64 \
      --max_side 192 --out "$SMOKE_DIR/data"
  CITYSCAPES=$SMOKE_DIR/data/cityscapes CONTRAST=$SMOKE_DIR/data/Contrast LOL_V1=$SMOKE_DIR/data/LOL-demo
  SCL_RUN=$SMOKE_DIR/snapshots/scl SCL_ITERS=4 SCL_CROP=64 SCL_SNAPSHOT_EVERY=2
  SCL_LOSSES="--w_seg 0 --w_segexp 0 --w_feat 0 --w_percep 0"   # no labels, DeepLab or VGG16 file needed
  SCL_EVAL=$SMOKE_DIR/data/LOL-demo/eval15 SCL_EVAL_OUT=$SMOKE_DIR/results/scl
  SAVE_DIR=$SMOKE_DIR/log ARCH=dce EPOCHS=2 WARMUP_EPOCHS=1 PATCH=32 VAL_PER_EPOCH=1
  LOSSES="--ssim_lambda 1 --lpips_lambda 0 --l1_lambda 0 --l2_lambda 0"
  DEVICE=cpu AMP=off WORKERS=0 NPROC=1
fi
# ====================================================================================================

if [ "$NPROC" -gt 1 ]; then RUN=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC" train.py)
else RUN=("$PYTHON" train.py); fi
COMMON=(--device "$DEVICE" --amp "$AMP" --num_workers "$WORKERS" ${SEED:+--random_seed "$SEED"})

# --resume only for a run whose latest checkpoint exists: a new folder starts a new run.
resume_flags() {
  if [ "$RESTART" = 1 ]; then echo --overwrite; elif [ -f "$1" ]; then echo --resume; fi
}

case "$STAGE" in
  scl)
    "${RUN[@]}" --stage scl "${COMMON[@]}" \
      --data_root "$CITYSCAPES" --contrast_dir "$CONTRAST" --ckpt "$SEG_CKPT" \
      --model "$SEG_MODEL" --output_stride "$SEG_STRIDE" \
      --total_itrs "$SCL_ITERS" --batch_size "$SCL_BATCH" --crop_size "$SCL_CROP" \
      --lowlight_lr "$SCL_LR" --lowlight_weight_decay "$SCL_WD" --grad_clip_norm "$SCL_CLIP" $SCL_LOSSES \
      --snapshots_folder "$SCL_RUN" --snapshot_iter "$SCL_SNAPSHOT_EVERY" $(resume_flags "$SCL_RUN/latest.pth")
    if [ -n "$SCL_EVAL" ]; then
      "$PYTHON" lowlight_test.py --device "$DEVICE" --input_dir "$SCL_EVAL" \
        --weights "$SCL_RUN/Epoch$SCL_ITERS.pth" --result_dir "$SCL_EVAL_OUT"
    fi ;;
  lol_v1|lol_v2)
    if [ "$STAGE" = lol_v1 ]; then TRAIN=$LOL_V1/our485 VAL=$LOL_V1/eval15 ENV=LOL_v1
    else TRAIN=$LOL_V2/Train VAL=$LOL_V2/Test ENV=LOL_v2; fi
    "${RUN[@]}" --stage enhancer "${COMMON[@]}" --save_dir "$SAVE_DIR" --env "$ENV" \
      --arch "$ARCH" ${WIDTH:+--embed_dim "$WIDTH"} --train_dir "$TRAIN" --val_dir "$VAL" \
      --nepoch "$EPOCHS" --lr_initial "$LR" --batch_size "$BATCH" --train_ps "$PATCH" \
      --warmup --warmup_epochs "$WARMUP_EPOCHS" --optimizer adamw --weight_decay "$WEIGHT_DECAY" $LOSSES \
      --val_time "$VAL_PER_EPOCH" $(resume_flags "$SAVE_DIR/$ENV/models/model_latest.pth") ;;
  *) echo "usage: $0 [scl|lol_v1|lol_v2]" >&2; exit 2 ;;
esac

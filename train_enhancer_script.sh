#!/usr/bin/env bash
# Enhancer training. Edit the paths below, then: bash train_enhancer_script.sh [scl|lol_v1|lol_v2]
# Multi-GPU: set NPROC (e.g. NPROC=4); the run is launched with torchrun. DEVICE=cpu forces the CPU.
set -euo pipefail
cd "$(dirname "$0")"

# --- SCL-LLE on Cityscapes (SPEC §3) --------------------------------------------------------------
CITYSCAPES=datasets/data/cityscapes          # leftImg8bit/train/<city>/*_leftImg8bit.png, gtFine/train/<city>/*_gtFine_labelIds.png
CONTRAST=datasets/data/Contrast              # low/ (negatives), GT/ (positives)
SEG_CKPT=checkpoints/best_deeplabv3plus_mobilenet_cityscapes_os16.pth   # DeepLab of the public port
SNAPSHOTS=snapshots/scl_lle/
# --- EMNet enhancer on LOL (SPEC §5) --------------------------------------------------------------
LOL_V1=datasets/data/LOL                     # our485/{low,high}, eval15/{low,high}
LOL_V2=datasets/data/LOL-v2/Real_captured    # Train/{Low,Normal}, Test/{Low,Normal}
# --------------------------------------------------------------------------------------------------
NPROC=${NPROC:-1}
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
STAGE=${1:-scl}
if [ "$NPROC" -gt 1 ]; then RUN=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC" train.py); else RUN=("$PYTHON" train.py); fi

case "$STAGE" in
  scl)
    "${RUN[@]}" --stage scl --device "$DEVICE" \
      --data_root "$CITYSCAPES" --contrast_dir "$CONTRAST" --ckpt "$SEG_CKPT" \
      --model deeplabv3plus_mobilenet --output_stride 16 \
      --total_itrs 50000 --batch_size 2 --crop_size 384 \
      --lowlight_lr 1e-4 --lowlight_weight_decay 1e-4 --grad_clip_norm 0.1 \
      --snapshots_folder "$SNAPSHOTS" --random_seed 1 --resume ;;
  lol_v1)
    "${RUN[@]}" --stage enhancer --device "$DEVICE" --env LOL_v1 --arch emnet \
      --train_dir "$LOL_V1/our485" --val_dir "$LOL_V1/eval15" \
      --nepoch 800 --lr_initial 2e-4 --batch_size 4 --train_ps 128 --warmup --warmup_epochs 3 \
      --optimizer adamw --weight_decay 0 --ssim_lambda 1 --lpips_lambda 1 --l1_lambda 0 --l2_lambda 0 --val_time 2 --resume ;;
  lol_v2)
    "${RUN[@]}" --stage enhancer --device "$DEVICE" --env LOL_v2 --arch emnet \
      --train_dir "$LOL_V2/Train" --val_dir "$LOL_V2/Test" \
      --nepoch 800 --lr_initial 2e-4 --batch_size 4 --train_ps 128 --warmup --warmup_epochs 3 \
      --optimizer adamw --weight_decay 0 --ssim_lambda 1 --lpips_lambda 1 --l1_lambda 0 --l2_lambda 0 --val_time 2 --resume ;;
  *) echo "usage: $0 [scl|lol_v1|lol_v2]" >&2; exit 2 ;;
esac

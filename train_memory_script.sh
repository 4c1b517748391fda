#!/usr/bin/env bash
# External memory on a frozen enhancer (SPEC §6). Edit the paths below, then:
#   bash train_memory_script.sh [lol_v1|lol_v2]
set -euo pipefail
cd "$(dirname "$0")"

LOL_V1=datasets/data/LOL                      # our485/{low,high}, eval15/{low,high}
LOL_V2=datasets/data/LOL-v2/Real_captured     # Train/{Low,Normal}, Test/{Low,Normal}
ENHANCER_V1=log/LOL_v1/models/model_best.pth  # from train_enhancer_script.sh lol_v1
ENHANCER_V2=log/LOL_v2/models/model_best.pth  # from train_enhancer_script.sh lol_v2
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

MEM_FLAGS=(--arch emnet --mem_size 9000 --K_feat_dim 512 --V_feat_dim 3 --thres 1e-5
           --pooling_size 1 --top_k 32 --testing_top_k 1 --batch_size 128 --train_ps 128 --nepoch 8000)
case "${1:-lol_v1}" in
  lol_v1)
    "$PYTHON" train.py --stage memory --device "$DEVICE" --env LOL_v1_mem --pretrain_weights "$ENHANCER_V1" \
      --train_dir "$LOL_V1/our485" --val_dir "$LOL_V1/eval15" "${MEM_FLAGS[@]}" --resume ;;
  lol_v2)
    "$PYTHON" train.py --stage memory --device "$DEVICE" --env LOL_v2_mem --pretrain_weights "$ENHANCER_V2" \
      --train_dir "$LOL_V2/Train" --val_dir "$LOL_V2/Test" "${MEM_FLAGS[@]}" --resume ;;
  *) echo "usage: $0 [lol_v1|lol_v2]" >&2; exit 2 ;;
esac

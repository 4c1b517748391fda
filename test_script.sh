#!/usr/bin/env bash
# Paired evaluation on LOL (SPEC §7): enhancer alone (ori/) and with the memory (mem/).
#   bash test_script.sh [lol_v1|lol_v2]
set -euo pipefail
cd "$(dirname "$0")"

LOL_V1_TEST=datasets/data/LOL/eval15
LOL_V2_TEST=datasets/data/LOL-v2/Real_captured/Test
ENHANCER_V1=log/LOL_v1/models/model_best.pth
MEMORY_V1=log/LOL_v1_mem/models/memory_best.pth
ENHANCER_V2=log/LOL_v2/models/model_best.pth
MEMORY_V2=log/LOL_v2_mem/models/memory_best.pth
DEVICE=${DEVICE:-auto}
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}

FLAGS=(--arch emnet --mem_size 9000 --pooling_size 1 --V_feat_dim 3 --testing_top_k 1 --save_images)
case "${1:-lol_v1}" in
  lol_v1)
    "$PYTHON" lowlight_test.py --device "$DEVICE" --input_dir "$LOL_V1_TEST" --weights "$ENHANCER_V1" \
      --mem_weights "$MEMORY_V1" --result_dir results/LOL_v1 "${FLAGS[@]}" ;;
  lol_v2)
    "$PYTHON" lowlight_test.py --device "$DEVICE" --input_dir "$LOL_V2_TEST" --weights "$ENHANCER_V2" \
      --mem_weights "$MEMORY_V2" --result_dir results/LOL_v2 "${FLAGS[@]}" ;;
  *) echo "usage: $0 [lol_v1|lol_v2]" >&2; exit 2 ;;
esac

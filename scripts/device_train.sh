#!/usr/bin/env bash
# Continue the bundled model's main run on a GPU machine for a fixed time box, then export it.
#
# Prepare (on the CPU machine, once per session; data_cache/ is git-ignored):
#   python -m fcanet_core.train_subset --from ../shared/data/train/{ecssd,coco,duts} --to data_cache/train_small
#   python -m fcanet_core.export_model --from <run>/last.pt --to data_cache/init.pt --fp32 --parent default \
#       --where "2-core CPU"          # the latest CPU weights; without it the bundled model is the start
# Run (on the GPU machine, data_cache carried, $OUT collected):
#   bash scripts/device_train.sh [SECONDS]            (default 420 s of training steps)
# Brings back $OUT/run/last.pt, $OUT/run/metrics.jsonl and $OUT/fcanet_lite0.pt (fp16, with its lineage).
# TRAIN_DEVICE (default cuda), TRAIN_CONFIG (default configs/lite0_device.py), TRAIN_SUBSET (the
# folder the config trains on), TRAIN_INIT and PYTHON override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
BOX="${1:-420}"
PY="${PYTHON:-python3}"
OUT="${OUT:?set OUT to the folder that comes back}"
INIT="${TRAIN_INIT:-data_cache/init.pt}"
[ -f "$INIT" ] || INIT=default
SUBSET="${TRAIN_SUBSET:-data_cache/train_small}"
[ -f "$SUBSET/index.csv" ] || { echo "$SUBSET is missing: see the header of $0" >&2; exit 2; }
"$PY" -m fcanet_core.train --config "${TRAIN_CONFIG:-configs/lite0_device.py}" --device "${TRAIN_DEVICE:-cuda}" \
    --out "$OUT/run" --init "$INIT" --time-budget "$BOX"
WHERE="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU")')"
"$PY" -m fcanet_core.export_model --from "$OUT/run/last.pt" --to "$OUT/fcanet_lite0.pt" --parent "$INIT" \
    --where "$WHERE"

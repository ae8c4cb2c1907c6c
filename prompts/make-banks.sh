#!/usr/bin/env sh
# Rebuilds the default bundle's prompt banks in prompts/banks/ from the prompt sets,
# calibrated on prompts/calibration/. Usage: prompts/make-banks.sh [MODEL_DIR [OUT_DIR]]
set -eu
cd "$(dirname "$0")/.."
model="${1:-models/default}"
out="${2:-prompts/banks}"
mkdir -p "$out"
cargo build --release --quiet
for set in objects hazards home coco80; do
    target/release/clipsight embed-prompts --model "$model" --prompts "prompts/$set.toml" \
        --calibration prompts/calibration --vocabulary prompts/vocabulary.txt \
        -o "$out/$set.safetensors"
done

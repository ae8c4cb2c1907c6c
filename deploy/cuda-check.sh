#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (a Jetson Orin with JetPack 6, or a desktop/server card):
# builds clipsight with the `cuda` feature and compares the image encoder on the GPU with the
# same encoder on the CPU, on the default bundle (models/default) and on the ViT-B/32-shaped
# test bundle (models/vit-b32, random weights, generated here when missing). Prints a table:
# per bundle and device, the load time, the time per image, and (for cuda) the worst
# embedding cosine against the CPU and the top-label agreement. Exits non-zero when the GPU
# disagrees with the CPU (cosine < 0.999 or a different top label) or cannot run.
#
#   deploy/cuda-check.sh [--photos N] [--no-build]
#
# Needs: Rust, the CUDA driver and the CUDA 12 libraries that tract-cuda loads at run time
# (libcuda, libcudart, libnvrtc, libcublas, libcudnn; JetPack 6 has them all), python3 with
# venv (for the ViT-B/32 test bundle: models/requirements-dev.txt, and CLIP's BPE vocabulary
# from an open_clip_torch wheel: $CLIPSIGHT_CLIP_BPE, else it is fetched with pip download).
set -euo pipefail
cd "$(dirname "$0")/.."

PHOTOS=16
BUILD=1
MIN_COSINE=0.999
while [ $# -gt 0 ]; do
    case "$1" in
        --photos) PHOTOS="$2"; shift ;;
        --no-build) BUILD=0 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
step() { printf '\n== %s\n' "$*"; }

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
elif [ ! -e /dev/nvhost-ctrl-gpu ] && [ ! -e /dev/nvidia0 ]; then
    echo "error: no NVIDIA GPU found (no nvidia-smi, /dev/nvidia0 or /dev/nvhost-ctrl-gpu)" >&2
    exit 2
fi

BIN="${CARGO_TARGET_DIR:-target}/release/clipsight"
if [ "$BUILD" = 1 ]; then
    step "cargo build --release --features cuda"
    cargo build --release --locked --features cuda
fi
[ -x "$BIN" ] || { echo "error: $BIN is missing" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [ ! -f models/vit-b32/model.toml ]; then
    step "models/vit-b32: the ViT-B/32-shaped test bundle"
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install -q -r models/requirements-dev.txt
    BPE_ARGS=()
    if [ -n "${CLIPSIGHT_CLIP_BPE:-}" ]; then
        BPE_ARGS=(--bpe "$CLIPSIGHT_CLIP_BPE")
    elif [ ! -f /work/wheels/open_clip_torch-3.3.0-py3-none-any.whl ]; then
        "$WORK/venv/bin/pip" download -q --no-deps -d "$WORK/wheels" open_clip_torch==3.3.0
        BPE_ARGS=(--bpe "$(ls "$WORK"/wheels/open_clip_torch-*.whl)")
    fi
    "$WORK/venv/bin/python" models/make_test_models.py vit-b32 models/vit-b32 "${BPE_ARGS[@]}"
fi

mapfile -t IMAGES < <( (ls tests/fixtures/photos/*.jpg; ls prompts/calibration/*.jpg) | head -n "$PHOTOS")

# classify BUNDLE BANK DEVICE OUT: one run over all photos, one over the first; prints
# "load_s ms_per_image" (the per-image time is the marginal cost: (T_all − T_1) / (N − 1)).
classify() {
    local bundle=$1 bank=$2 device=$3 out=$4 t0 t1 t2
    t0=$(date +%s.%N)
    "$BIN" classify --model "$bundle" --bank "$bank" --device "$device" --top 1 --json \
        --embeddings "${IMAGES[0]}" >/dev/null
    t1=$(date +%s.%N)
    "$BIN" classify --model "$bundle" --bank "$bank" --device "$device" --top 1 --json \
        --embeddings "${IMAGES[@]}" >"$out"
    t2=$(date +%s.%N)
    python3 -c "
n = ${#IMAGES[@]}
one, all_ = $t1 - $t0, $t2 - $t1
per = (all_ - one) / (n - 1)
print(f'{one - per:.2f} {per * 1000:.1f}')"
}

compare() { # compare CPU_JSONL CUDA_JSONL → "worst_cosine agree/total"
    python3 - "$1" "$2" <<'EOF'
import json, math, sys
a = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
b = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
worst, agree = 1.0, 0
for x, y in zip(a, b):
    u, v = x["embedding"], y["embedding"]
    c = sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))
    worst = min(worst, c)
    agree += x["labels"][0]["label"] == y["labels"][0]["label"]
print(f"{worst:.6f} {agree}/{len(a)}")
EOF
}

status=0
ROWS=()
for bundle in models/default models/vit-b32; do
    name=$(basename "$bundle")
    step "$name: prompt bank (CPU)"
    bank="$WORK/$name.safetensors"
    "$BIN" embed-prompts --model "$bundle" --prompts tests/fixtures/prompts-small.toml \
        --calibration prompts/calibration -o "$bank"
    step "$name: cpu"
    out=$(classify "$bundle" "$bank" cpu "$WORK/$name-cpu.jsonl")
    read -r load_cpu ms_cpu <<<"$out"
    ROWS+=("$(printf '%-10s %-6s %8s %10s %12s %8s' "$name" cpu "$load_cpu" "$ms_cpu" "-" "-")")
    step "$name: cuda"
    if out=$(classify "$bundle" "$bank" cuda "$WORK/$name-cuda.jsonl"); then
        read -r load_gpu ms_gpu <<<"$out"
        out=$(compare "$WORK/$name-cpu.jsonl" "$WORK/$name-cuda.jsonl")
        read -r worst agree <<<"$out"
        ROWS+=("$(printf '%-10s %-6s %8s %10s %12s %8s' "$name" cuda "$load_gpu" "$ms_gpu" "$worst" "$agree")")
        if python3 -c "import sys; sys.exit(0 if $worst >= $MIN_COSINE else 1)" \
            && [ "${agree%/*}" = "${agree#*/}" ]; then :; else status=1; fi
    else
        ROWS+=("$(printf '%-10s %-6s %8s' "$name" cuda FAILED)")
        status=1
    fi
done

step "results (${#IMAGES[@]} photos; cosine and top-1 agreement against the CPU)"
printf '%-10s %-6s %8s %10s %12s %8s\n' bundle device load_s ms/image min_cosine top1
for r in "${ROWS[@]}"; do echo "$r"; done
if [ "$status" = 0 ]; then echo "cuda-check: PASS"; else echo "cuda-check: FAIL"; fi
exit "$status"

#!/usr/bin/env bash
# Runs the aarch64 build under user-mode QEMU and checks it against the x86_64 build:
#
#   1. both builds classify the same photos with the default bundle (models/default) and a
#      prompt bank; every image's embedding must agree (cosine ≥ 0.9999) and its top label
#      must be the same;
#   2. (unless --no-tests) the aarch64 unit tests and the library-level integration tests
#      (ONNX parity against onnxruntime fixtures) run under qemu through the cargo runner in
#      .cargo/config.toml.
#
# Exits non-zero on any difference or failure. Prints how long each step took.
#
#   deploy/qemu-check.sh                 # fixture photos + 12 calibration photos, then tests
#   deploy/qemu-check.sh --photos 40     # more calibration photos
#   deploy/qemu-check.sh --photos all --no-tests
#
# Needs: deploy/build-arm64.sh run once (cross toolchain, qemu-user-static), python3.
# Environment: CARGO_TARGET_DIR as usual; X86_TARGET_DIR for an x86_64 build kept elsewhere;
# X86_BIN to compare with a given x86_64 binary instead (e.g. target/debug/clipsight).
# The integration test modules that start the clipsight binary (cli, live, precision, privacy,
# service, bombs, pose, ort, speechd: see SKIP below) are skipped under qemu: without
# binfmt_misc an emulated process cannot exec another aarch64 binary. Step 1 drives the aarch64
# binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
PHOTOS=12
TESTS=1
MIN_COSINE=0.9999
# Every integration module with a test that runs the binary (grep -l 'bin()' tests/integration).
SKIP=()
for m in cli live precision privacy service bombs pose ort speechd; do SKIP+=(--skip "$m::"); done
while [ $# -gt 0 ]; do
    case "$1" in
        --photos) PHOTOS="$2"; shift ;;
        --no-tests) TESTS=0 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

for tool in qemu-aarch64-static python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (run deploy/build-arm64.sh)" >&2; exit 1; }
done
QEMU=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# The x86_64 build may live in another target dir (X86_TARGET_DIR), e.g. one built in parallel.
X86_TARGET_DIR="${X86_TARGET_DIR:-$TARGET_DIR}"
X86="${X86_BIN:-$X86_TARGET_DIR/release/clipsight}"
ARM="$TARGET_DIR/$TARGET/release/clipsight"
MODEL=models/default
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu"
export PKG_CONFIG_aarch64_unknown_linux_gnu=aarch64-linux-gnu-pkg-config
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
declare -A TIMES
ORDER=()
timed() { # timed NAME COMMAND...: runs it and records its wall time
    local name=$1 start
    shift
    start=$(date +%s.%N)
    "$@"
    TIMES[$name]=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    ORDER+=("$name")
}
step() { printf '\n== %s\n' "$*"; }

step "build (x86_64 and aarch64, release; no-ops when up to date)"
if [ -z "${X86_BIN:-}" ]; then
    timed "build x86_64" env CARGO_TARGET_DIR="$X86_TARGET_DIR" cargo build --release --locked
fi
timed "build aarch64" cargo build --release --locked --target "$TARGET"
file "$ARM" | grep -q "ARM aarch64" || { echo "error: $ARM is not an aarch64 binary" >&2; exit 1; }

# The photos: every fixture photo, then the first N calibration photos (sorted by name).
mapfile -t IMAGES < <(ls tests/fixtures/photos/*.jpg)
if [ "$PHOTOS" = all ]; then
    mapfile -t -O "${#IMAGES[@]}" IMAGES < <(ls prompts/calibration/*.jpg)
else
    mapfile -t -O "${#IMAGES[@]}" IMAGES < <(ls prompts/calibration/*.jpg | head -n "$PHOTOS")
fi

# The bank: a shipped one made with the default bundle, else one made here by the x86 build.
BANK=""
for b in prompts/banks/objects.safetensors prompts/banks/*.safetensors; do
    if [ -f "$b" ] && "$X86" classify --model "$MODEL" --bank "$b" --json "${IMAGES[0]}" >/dev/null 2>&1; then
        BANK=$b
        break
    fi
done
if [ -z "$BANK" ]; then
    step "no bank for $MODEL in prompts/banks: embedding prompts/coco80.toml (x86_64)"
    BANK="$WORK/coco80.safetensors"
    timed "embed-prompts x86_64" "$X86" embed-prompts --model "$MODEL" --prompts prompts/coco80.toml \
        --calibration prompts/calibration -o "$BANK"
fi
echo "bank: $BANK; ${#IMAGES[@]} photos"

step "classify on x86_64"
timed "classify x86_64" "$X86" classify --model "$MODEL" --bank "$BANK" --top 3 --json --embeddings \
    "${IMAGES[@]}" >"$WORK/x86.jsonl"
step "classify on aarch64 under qemu"
timed "classify aarch64 (qemu)" "${QEMU[@]}" "$ARM" classify --model "$MODEL" --bank "$BANK" --top 3 \
    --json --embeddings "${IMAGES[@]}" >"$WORK/arm.jsonl"

step "compare"
status=0
python3 - "$WORK/x86.jsonl" "$WORK/arm.jsonl" "$MIN_COSINE" <<'EOF' || status=1
import json, math, sys

def load(path):
    return [json.loads(line) for line in open(path) if line.strip()]

x86, arm, min_cos = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if len(x86) != len(arm) or not x86:
    sys.exit(f"x86_64 gave {len(x86)} results, aarch64 {len(arm)}")
bad = 0
worst = 1.0
print(f"{'image':<44} {'cosine':>10}  {'top label x86_64':<22} {'top label aarch64':<22}")
for a, b in zip(x86, arm):
    name = a["image"].rsplit("/", 1)[-1]
    if "error" in a or "error" in b or a["image"] != b["image"]:
        print(f"{name:<44} error: {a.get('error')} / {b.get('error')}")
        bad += 1
        continue
    u, v = a["embedding"], b["embedding"]
    cos = sum(p * q for p, q in zip(u, v)) / math.sqrt(sum(p * p for p in u) * sum(q * q for q in v))
    worst = min(worst, cos)
    ta, tb = a["labels"][0]["label"], b["labels"][0]["label"]
    ok = cos >= min_cos and ta == tb and len(u) == len(v)
    bad += not ok
    print(f"{name:<44} {cos:>10.7f}  {ta:<22} {tb:<22}{'' if ok else '  MISMATCH'}")
print(f"\n{len(x86)} images, worst cosine {worst:.7f} (need ≥ {min_cos}), {bad} mismatches")
sys.exit(1 if bad else 0)
EOF

if [ "$TESTS" = 1 ]; then
    step "aarch64 tests under qemu (lib + integration::parity; cli tests need binfmt_misc)"
    if ! timed "tests aarch64 (qemu)" cargo test --release --locked --target "$TARGET" --lib \
        --test integration -- "${SKIP[@]}"; then
        status=1
    fi
fi

step "timings (wall seconds)"
for name in "${ORDER[@]}"; do printf '%-28s %8s\n' "$name" "${TIMES[$name]}"; done
if [ "$status" = 0 ]; then echo "qemu-check: PASS"; else echo "qemu-check: FAIL"; fi
exit "$status"

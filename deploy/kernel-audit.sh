#!/usr/bin/env bash
# Which matrix-product kernels tract picks on the ARM cores of the boards, checked without a
# board: the aarch64 build runs `clipsight bench --kernels` under user-mode QEMU presenting
#
#   cortex-a76  (Raspberry Pi 5, RK3588's big cores: NEON + dot product + fp16)
#   cortex-a72  (Raspberry Pi 4: NEON only)
#
# for every image encoder below, and fails if any matrix product runs on tract's portable
# kernel, on a matrix-vector kernel while it is a matrix product, or (int8) without `sdot` on a
# core that has it, or if a matrix product is not lowered to a kernel at all. It prints a
# Markdown table (the one in deploy/README.md) and keeps each report under target/kernel-audit/.
#
# The encoders: the default bundle's (models/default), the ViT-B/32-shaped graph in fp32
# (models/vit-b32/image.onnx; `python models/make_test_models.py vit-b32` writes it) and its
# int8 form (`models/quantize`, made here when missing).
#
#   deploy/kernel-audit.sh                 # builds the aarch64 binary if needed
#   deploy/kernel-audit.sh --cpu max       # also qemu's `max` core (SVE2, SME), for information
#
# What a board would see, and what qemu cannot show: tract reads the dot-product flag from
# HWCAP, which qemu sets from -cpu; the CPU part number and the fp16 flag it reads from
# /proc/cpuinfo, which under qemu-user is the host's. TRACT_CPU_AARCH64_OVERRIDE_CPU_PART gives
# it the board's part number (0xd0b Cortex-A76, 0xd08 Cortex-A72). fp16 only matters for f16
# encoders, which clipsight does not ship.
#
# Needs: deploy/build-arm64.sh run once (cross toolchain, qemu-user-static, rustup target),
# python3; for the ViT-B/32 graphs the packages of models/requirements-dev.txt (in models/.venv
# when it exists).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
CPUS=(cortex-a76 cortex-a72)
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) CPUS+=("$2"); shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done
declare -A PART=([cortex-a76]=0xd0b [cortex-a72]=0xd08 [cortex-a55]=0xd05 [cortex-a53]=0xd03)
# What the audit must see in tract's instruction set for the core, or qemu did not present it.
declare -A MUST_HAVE=([cortex-a76]=dotprod [cortex-a55]=dotprod)
declare -A MUST_LACK=([cortex-a72]=dotprod [cortex-a53]=dotprod)

for tool in qemu-aarch64-static python3; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (run deploy/build-arm64.sh)" >&2; exit 1; }
done
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
ARM="$TARGET_DIR/$TARGET/release/clipsight"
OUT="$TARGET_DIR/kernel-audit"
mkdir -p "$OUT"

printf '== cargo build --release --target %s (a no-op when up to date)\n' "$TARGET"
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu"
export PKG_CONFIG_aarch64_unknown_linux_gnu=aarch64-linux-gnu-pkg-config
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
cargo build --release --locked --target "$TARGET"

FP32=models/vit-b32/image.onnx
INT8="$OUT/vit-b32-int8.onnx"
PY=python3
[ -x models/.venv/bin/python ] && PY=models/.venv/bin/python
if [ ! -f "$FP32" ]; then
    printf '== %s is missing: %s models/make_test_models.py vit-b32\n' "$FP32" "$PY"
    "$PY" models/make_test_models.py vit-b32
fi
if [ ! -f "$INT8" ] || [ "$FP32" -nt "$INT8" ]; then
    printf '== models/quantize %s %s\n' "$FP32" "$INT8"
    models/quantize "$FP32" "$INT8"
fi
# name|bundle|onnx file (empty: the bundle's own)
ENCODERS=(
    "default bundle|models/default|"
    "ViT-B/32-shaped fp32|models/vit-b32|$FP32"
    "ViT-B/32-shaped int8|models/vit-b32|$INT8"
)

status=0
REPORTS=()
for cpu in "${CPUS[@]}"; do
    for enc in "${ENCODERS[@]}"; do
        IFS='|' read -r name bundle onnx <<<"$enc"
        slug="$cpu-$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr 'A-Z' 'a-z')"
        args=(bench --model "$bundle" --kernels --json)
        [ -n "$onnx" ] && args+=(--onnx "$onnx")
        printf '== %s: %s\n' "$cpu" "$name"
        start=$(date +%s)
        rc=0
        env ${PART[$cpu]:+TRACT_CPU_AARCH64_OVERRIDE_CPU_PART=${PART[$cpu]}} \
            qemu-aarch64-static -cpu "$cpu" -L /usr/aarch64-linux-gnu "$ARM" "${args[@]}" \
            >"$OUT/$slug.json" 2>"$OUT/$slug.log" || rc=$?
        echo "   $(( $(date +%s) - start )) s, exit status $rc"
        if [ "$rc" -gt 1 ] || [ ! -s "$OUT/$slug.json" ]; then
            echo "error: the audit did not run; $OUT/$slug.log says:" >&2
            tail -5 "$OUT/$slug.log" >&2
            status=1
            continue
        fi
        [ "$rc" = 1 ] && status=1
        REPORTS+=("$cpu|$name|$OUT/$slug.json|${MUST_HAVE[$cpu]:-}|${MUST_LACK[$cpu]:-}")
    done
done

printf '\n'
python3 - "${REPORTS[@]}" <<'EOF' || status=1
import collections, json, sys

bad = False
print("| Core (qemu `-cpu`) | Encoder | tract's instruction set | Matrix products: kernel (count) | Problems |")
print("|---|---|---|---|---|")
for arg in sys.argv[1:]:
    cpu, name, path, must_have, must_lack = arg.split("|")
    report = json.load(open(path))
    isa = report["cpu"].split(",")
    notes = []
    if must_have and must_have not in isa:
        notes.append(f"qemu did not present {must_have}")
    if must_lack and must_lack in isa:
        notes.append(f"{must_lack} present on a core without it")
    kinds = collections.Counter(
        (p["accumulator"], p["kernel"], p["n"] == "1") for p in report["products"])
    cells = []
    for (acc, kernel, mv), count in sorted(kinds.items()):
        cells.append(f"{'int8' if acc == 'i32' else acc}{' n=1' if mv else ''}: `{kernel}` ({count})")
    problems = [f"{p['node']}: {p['problem']}" for p in report["products"] if p["problem"]]
    problems += [f"{u}: not lowered" for u in report["unlowered"]]
    problems += notes
    bad |= bool(problems)
    shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3})" if len(problems) > 3 else "")
    print(f"| {cpu} | {name} | {','.join(i for i in isa if i != 'aarch64') or 'NEON'} | "
          f"{'<br>'.join(cells)} | {shown or 'none'} |")
sys.exit(1 if bad else 0)
EOF
if [ "$status" = 0 ]; then
    echo "kernel audit: passed"
else
    echo "kernel audit: FAILED (reports under $OUT)" >&2
fi
exit "$status"

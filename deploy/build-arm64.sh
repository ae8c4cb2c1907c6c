#!/usr/bin/env bash
# Cross-builds clipsight for 64-bit ARM boards (Raspberry Pi 4/5, Jetson Orin, RK3588) on a
# Debian 12 x86_64 machine and packages it as a Debian package:
#
#   deploy/build-arm64.sh            # → target/debian/clipsight_<version>_arm64.deb
#   deploy/build-arm64.sh --amd64    # … and target/debian/clipsight_<version>_amd64.deb
#
# It installs what it needs first (as root, or through sudo): Debian's aarch64 cross gcc, the
# arm64 -dev packages the -sys crates link against (libspeechd-dev:arm64, through
# `dpkg --add-architecture arm64`), clang for bindgen, qemu-user-static (for
# deploy/qemu-check.sh), the rustup target and cargo-deb. Rust itself (rustup) must be there.
#
# Options:
#   --amd64        also build the amd64 package (a host build)
#   --no-install   skip apt, rustup and cargo-deb (they are already there)
#   --features F   extra cargo features for both builds (default features are always on)
#
# Cross-build notes (see deploy/README.md):
#   - v4l2-sys-mit (nokhwa's V4L2 backend) and speech-dispatcher-sys run bindgen on the
#     target's headers: clang gets --target=aarch64-linux-gnu and finds Debian's cross sysroot
#     (/usr/aarch64-linux-gnu/include) and the multiarch headers (/usr/include/aarch64-linux-gnu)
#     by itself. Only libspeechd is linked (v4l uses the kernel ioctls; libv4l is not linked).
#   - onig_sys (the tokenizer's regex engine), mozjpeg-sys and tract-linalg build their C and
#     assembly with aarch64-linux-gnu-gcc, which cc-rs finds by itself.
#   - The linker and the qemu runner are set in .cargo/config.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
CARGO_DEB_VERSION=3.8.0
AMD64=0
INSTALL=1
FEATURES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --amd64) AMD64=1 ;;
        --no-install) INSTALL=0 ;;
        --features) FEATURES="$2"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
    shift
done

step() { printf '\n== %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
    echo "error: cargo and rustup are needed (https://rustup.rs)" >&2
    exit 1
fi

if [ "$INSTALL" = 1 ]; then
    step "apt: cross toolchain, arm64 libraries, bindgen's clang, qemu"
    export DEBIAN_FRONTEND=noninteractive
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $SUDO dpkg --add-architecture arm64
    fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends \
        build-essential pkg-config clang libclang-dev \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu \
        libspeechd-dev libspeechd-dev:arm64 \
        qemu-user-static dpkg-dev >/dev/null
    step "rustup target add $TARGET"
    rustup target add "$TARGET"
    if [ "$(cargo deb --version 2>/dev/null | awk '{print $2}')" != "$CARGO_DEB_VERSION" ]; then
        step "cargo install cargo-deb $CARGO_DEB_VERSION"
        cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
    fi
fi

# bindgen: clang for the target (it then finds Debian's cross and multiarch headers).
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu"
# pkg-config lookups go to the arm64 .pc files (no crate of the default build makes one today).
# C code (onig_sys, mozjpeg-sys, tract-linalg's kernels): cc-rs picks aarch64-linux-gnu-gcc by
# itself; CC_aarch64_unknown_linux_gnu is deliberately not set, as setting it (even to the same
# compiler) makes those build scripts, and everything above them, run again.
export PKG_CONFIG_aarch64_unknown_linux_gnu=aarch64-linux-gnu-pkg-config
export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig

TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET_DIR/debian"
mkdir -p "$OUT"
FEATURE_ARGS=()
if [ -n "$FEATURES" ]; then FEATURE_ARGS=(--features "$FEATURES"); fi

# The package ships whatever prompts/banks/ holds (the banks made by `embed-prompts`).
if ! compgen -G "prompts/banks/*.safetensors" >/dev/null; then
    echo "warning: prompts/banks/ holds no .safetensors bank; the package ships none and the" >&2
    echo "         profiles' banks must be added to /usr/share/clipsight/banks/ on the device" >&2
fi

step "cargo build --release --target $TARGET"
start=$(date +%s)
cargo build --release --locked --target "$TARGET" "${FEATURE_ARGS[@]}"
echo "cross build: $(( $(date +%s) - start )) s"
step "cargo deb (arm64)"
# cargo-deb strips with the target's strip (the host's cannot read aarch64 binaries).
env "STRIP_aarch64-unknown-linux-gnu=aarch64-linux-gnu-strip" \
    "OBJCOPY_aarch64-unknown-linux-gnu=aarch64-linux-gnu-objcopy" \
    cargo deb --no-build --target "$TARGET" --output "$OUT" "${FEATURE_ARGS[@]}"

if [ "$AMD64" = 1 ]; then
    step "cargo build --release (amd64)"
    start=$(date +%s)
    cargo build --release --locked "${FEATURE_ARGS[@]}"
    echo "host build: $(( $(date +%s) - start )) s"
    step "cargo deb (amd64)"
    cargo deb --no-build --output "$OUT" "${FEATURE_ARGS[@]}"
fi

step "packages"
for deb in "$OUT"/*.deb; do
    printf '%s: %s\n' "$deb" "$(dpkg-deb -f "$deb" Architecture)"
done

#!/usr/bin/env bash
# Installs onnxruntime's shared library from the Python registry (the wheel carries
# libonnxruntime.so) into a venv under target/, for the `--backend ort` tests, and prints the
# library's path. The runtime itself needs no Python: it only opens the library.
#   export ORT_DYLIB_PATH="$(.ci/ort.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ort-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/pip" install -q --disable-pip-version-check onnxruntime==1.32.0 >&2
lib=$(ls "$PWD"/$venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
test -f "$lib"
echo "$lib"

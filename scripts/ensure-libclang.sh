#!/usr/bin/env bash
# Makes sure libclang is present for the bindgen regeneration test (ffi/abi). Installs
# Debian's libclang-dev when it is missing and we may; otherwise says what to do and fails.
set -euo pipefail
if ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* 2>/dev/null | grep -q libclang; then
  exit 0
fi
if [ -n "${LIBCLANG_PATH:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "installing libclang-dev (needed by the bindgen regeneration test)..."
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
  exit 0
fi
echo "libclang is missing: install it (Debian: apt-get install libclang-dev) or set LIBCLANG_PATH" >&2
exit 1

#!/usr/bin/env bash
# Installs knpu into a temporary prefix with `make install PREFIX=...`, then builds and runs
# a C program with `pkg-config --cflags --libs knpu` and a CMake project with
# find_package(knpu), as a user of the installed package would.
# Usage: install_test.sh CMAKE (the cmake executable to use).
set -euo pipefail
cmake_bin="${1:?usage: install_test.sh CMAKE}"
repo="$(cd "$(dirname "$0")/../../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
prefix="$work/prefix"

make -s -C "$repo" install PREFIX="$prefix" >/dev/null
for f in include/knpu.h include/knpublas.h include/knpu_ops.h include/knpu_driver.h lib/libknpu.a lib/libknpu.so lib/libknpu.so.1 \
         lib/pkgconfig/knpu.pc lib/cmake/knpu/knpu-config.cmake; do
  [ -e "$prefix/$f" ] || { echo "install is missing $f" >&2; exit 1; }
done
soname="$(objdump -p "$prefix/lib/libknpu.so" | awk '/SONAME/ {print $2}')"
[ "$soname" = "libknpu.so.1" ] || { echo "soname is '$soname', expected libknpu.so.1" >&2; exit 1; }

# pkg-config
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -std=c99 -Wall -Wextra -Werror "$repo/ffi/capi/tests/consumer/main.c" -o "$work/pc-app" \
  $(pkg-config --cflags --libs knpu) -Wl,-rpath,"$prefix/lib"
"$work/pc-app"

# CMake
"$cmake_bin" -S "$repo/ffi/capi/tests/consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >/dev/null
"$cmake_bin" --build "$work/build" >/dev/null
"$work/build/consumer"
"$work/build/consumer_static"
echo "install test: pkg-config and CMake consumers built and ran"

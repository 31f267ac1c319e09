#!/usr/bin/env bash
# Run HERE (a machine with the package index), not on the device: downloads the wheels of wheels.txt for CPython 3.12
# manylinux x86_64 into .stretch-wheels/, then splits them into two carry folders that each stay under ~55 MiB:
#   .stretch-wheels/a  every wheel but ray + the first part of the ray wheel (ray.whl.part-a)
#   .stretch-wheels/b  the rest of the ray wheel (ray.whl.part-b)
# The ray wheel alone (67.4 MB) is over the device's 64 MiB carry limit; run.sh joins the parts and checks the
# wheel's sha256 (recorded in .stretch-wheels/a/SHA256SUMS) before installing, so pip installs the unmodified wheel.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
dl="$root/.stretch-wheels/download"
rm -rf "$root/.stretch-wheels"; mkdir -p "$dl" "$root/.stretch-wheels/a" "$root/.stretch-wheels/b"
reqs=$(sed -e 's/#.*//' -e '/^\s*$/d' "$here/wheels.txt" | grep -v '^antlr4-python3-runtime')
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform any \
  -d "$dl" $reqs
antlr=$(grep '^antlr4-python3-runtime' "$here/wheels.txt" | sed 's/\s*#.*//')
python3 -m pip wheel -q --no-deps --no-binary=:all: -w "$dl" "$antlr"
ray=$(ls "$dl"/ray-*.whl)
(cd "$dl" && sha256sum ./*.whl) > "$root/.stretch-wheels/a/SHA256SUMS"
find "$dl" -name '*.whl' ! -name 'ray-*' -exec mv {} "$root/.stretch-wheels/a/" \;
# balance the two folders: a = the other wheels + the head of ray, b = the tail of ray
others=$(du -sb "$root/.stretch-wheels/a" | cut -f1)
head_bytes=$(( ( $(stat -c %s "$ray") + others ) / 2 - others ))
head -c "$head_bytes" "$ray" > "$root/.stretch-wheels/a/ray.whl.part-a"
tail -c +"$((head_bytes + 1))" "$ray" > "$root/.stretch-wheels/b/ray.whl.part-b"
basename "$ray" > "$root/.stretch-wheels/a/RAY_WHEEL"
rm -rf "$dl"
du -sb "$root/.stretch-wheels/a" "$root/.stretch-wheels/b"

#!/usr/bin/env bash
# Download (here, from PyPI) the wheels that the H200 device image lacks into <repo>/.whl/,
# for Python 3.12 / manylinux x86_64, then check that they and the working tree fit the
# device tool's 64 MiB carry limit. Usage: benchmarks/gpu/fetch-wheels.sh [PYTHON]
# The device image already has torch 2.11, transformers, peft, accelerate, timm, onnxruntime,
# opencv-python-headless, numpy, pillow, pytest (see benchmarks/gpu/README.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:-python3}"
dest="$root/.whl"
limit_mib=64
# name==version, one per line: the versions nftkit is tested with here.
wheels=(
  diffusers==0.42.1 importlib_metadata==8.7.0
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
  SQLAlchemy==2.1.9 alembic==1.20.1 Mako==1.4.3
  starlette==1.10.0 uvicorn==0.54.0
  rapidocr_onnxruntime==1.4.4 pyclipper==1.4.0 shapely==2.2.0
)
mkdir -p "$dest"
# keep the folder out of git (the README's `run` call names it in carry)
exclude="$(git -C "$root" rev-parse --git-path info/exclude)"
case "$exclude" in /*) ;; *) exclude="$root/$exclude" ;; esac
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
         manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" "${wheels[@]}"
# one version of each distribution (two would stop the install on the device)
dups="$(ls "$dest" | sed 's/-[0-9].*//' | tr 'A-Z-' 'a-z_' | sort | uniq -d)"
if [ -n "$dups" ]; then echo "fetch-wheels: several versions of: $dups; delete the old ones in $dest" >&2; exit 1; fi
whl_bytes=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
tree_bytes=$(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null \
  | awk '$2=="total"{s+=$1} END{print s+0}')
total=$((whl_bytes + tree_bytes))
limit=$((limit_mib * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
echo "wheels: $(ls "$dest"/*.whl | wc -l) files, $(mib "$whl_bytes") MiB in $dest"
echo "working tree (tracked + untracked, not ignored): $(mib "$tree_bytes") MiB"
if [ "$total" -gt "$limit" ]; then
  echo "TOO LARGE: $(mib "$total") MiB > ${limit_mib} MiB carry limit" >&2; exit 1
fi
echo "total $(mib "$total") MiB <= ${limit_mib} MiB carry limit: OK"

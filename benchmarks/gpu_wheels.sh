#!/usr/bin/env bash
# Downloads the wheels a lent GPU machine lacks into DIR (default .whl), at the versions pinned in
# requirements/constraints.txt. Such a machine has Python 3.12, torch, numpy, scipy, scikit-learn,
# numba, h5py and matplotlib, no route to PyPI, and (as last seen) pandas 3, which anndata 0.12
# cannot write. There, before benchmarks/gpu_check.sh:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl && export PYTHONPATH=/tmp/site
#
#   benchmarks/gpu_wheels.sh [DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$repo/.whl}
packages=(anndata array-api-compat donfig google-crc32c numcodecs zarr scanpy legacy-api-wrap natsort
          session-info2 scverse-misc pynndescent umap-learn igraph texttable leidenalg pandas pytz tzdata)
pins=()
for package in "${packages[@]}"; do
    pin=$(grep -i -E "^${package//-/[-_]}==" "$repo/requirements/constraints.txt") \
        || { echo "gpu_wheels.sh: error: $package is not pinned in requirements/constraints.txt" >&2; exit 2; }
    pins+=("$pin")
done
platforms=()
for tag in manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux2014; do
    platforms+=(--platform "${tag}_x86_64")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$dir" "${pins[@]}"
ls "$dir"

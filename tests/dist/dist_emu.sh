#!/bin/sh
# dist_emu.sh: data-parallel training on the emu target, on the CPU (tests/dist.cmake).
#   dist_emu.sh MODE EXES ST_COMPARE LAUNCH DATA INIT
# EXES holds emu executables compiled by the `build` mode: micro_bN (deit_micro's shape) and
# ti_bN (DeiT-Ti's width, heads and MLP, depth 2, 64-pixel images), N = 4, 2, 1: one rank with
# batch 4 against 2 ranks of 2 and 4 ranks of 1 see the same 4 images a step (DistributedSampler
# shards of the same permutation). DATA: an ImageFolder of 12 images (3 steps an epoch at every
# world size); INIT: deit_micro's weights.
# Weights are compared by relative L2 (1e-6) except the qkv biases, whose key third has an exactly
# zero gradient that AdamW turns into steps of rounding noise (st_compare --qkv-key): their
# changes are compared (1e-5) with the key third bounded by steps * lr.
# Exit 77: skipped (mpirun absent), with the reason on stdout.
set -eu
mode=$1 exes=$2 cmp=$3 launch=$4 data=$5 init=$6
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
cd "$d"

compare() { # st_compare's arguments: its verdict line shown, its status kept
  rc=0
  "$cmp" "$@" > cmp.txt || rc=$?
  tail -1 cmp.txt
  return $rc
}

same_weights() { # GOT EXPECTED [INIT]: the weights after 3 steps agree
  compare "$1" "$2" 1e-6 '!*qkv.bias'
  compare --delta "${3:-$init}" --qkv-key 0.003 "$1" "$2" 1e-5 '*qkv.bias'
}

case $mode in
build) # the executables the other modes share (DEITC_DEITC: the compiler, DEITC_MODEL: deit_tiny.yaml)
  mkdir -p "$exes"
  for b in 4 2 1; do
    "$DEITC_DEITC" compile "$DEITC_MODEL" --target emu -D img_size=32 -D patch_size=8 -D embed_dim=64 -D depth=2 \
      -D num_heads=2 -D num_classes=10 --batch $b -o "$exes/micro_b$b" > /dev/null
    "$DEITC_DEITC" compile "$DEITC_MODEL" --target emu -D img_size=64 -D patch_size=16 -D depth=2 -D num_classes=3 \
      --batch $b -o "$exes/ti_b$b" > /dev/null
  done
  echo "dist build ok" ;;

env) # torchrun-style environment (launch.sh): 1 vs 2 vs 4 ranks, deit_micro's shape
  "$exes/micro_b4" train --init "$init" --data "$data" --steps 3 --save w1.st > /dev/null
  "$launch" 2 "$exes/micro_b2" train --init "$init" --data "$data" --steps 3 --save w2.st --metrics m2.jsonl > out2.txt
  grep -q 'on 2 ranks .*global batch 4 (2 x 2)' out2.txt
  [ "$(wc -l < m2.jsonl)" -eq 3 ] # rank 0 alone writes the metrics
  "$launch" 4 "$exes/micro_b1" train --init "$init" --data "$data" --steps 3 --save w4.st --bucket-mb 0.01 > out4.txt
  grep -q 'global batch 4 (4 x 1)' out4.txt
  [ "$(grep -c '^step ' out4.txt)" -eq 3 ] # rank 0 alone prints progress
  same_weights w2.st w1.st
  same_weights w4.st w1.st
  # the bucket size changes when each bucket is sent, never the bits
  "$launch" 2 "$exes/micro_b2" train --init "$init" --data "$data" --steps 3 --save w2s.st --bucket-mb 0.001 > out2s.txt
  grep -q 'gradient buckets' out2s.txt
  cmp w2.st w2s.st
  # eval sharded (rank r takes images r, r + W, ...: 12 images on 5 ranks are 3, 3, 2, 2, 2):
  # images and accuracy are exact counts summed over the ranks, the loss a sum in rank order
  "$exes/micro_b4" eval --init "$init" --data "$data" | grep "^{" > e1.json
  for n in 2 5; do
    "$launch" $n "$exes/micro_b4" eval --init "$init" --data "$data" | grep "^{" > e$n.json
    cat e$n.json
    cmp e1.json e$n.json
  done
  echo "dist env ok" ;;

mpirun) # the same under Open MPI's mpirun (the ranks meet over MPI: no MASTER_*)
  if ! command -v mpirun > /dev/null; then echo "SKIP: mpirun not installed (apt-get install openmpi-bin)"; exit 77; fi
  unset MASTER_ADDR MASTER_PORT RANK WORLD_SIZE || true
  mpi="mpirun --allow-run-as-root --oversubscribe"
  "$exes/micro_b4" train --init "$init" --data "$data" --steps 3 --save w1.st > /dev/null
  $mpi -np 2 "$exes/micro_b2" train --init "$init" --data "$data" --steps 3 --save w2.st > out2.txt
  $mpi -np 4 "$exes/micro_b1" train --init "$init" --data "$data" --steps 3 --save w4.st > out4.txt
  grep -q 'on 4 ranks' out4.txt
  same_weights w2.st w1.st
  same_weights w4.st w1.st
  # identical to the torchrun-style launch: the reduction order does not depend on the launcher
  "$launch" 4 "$exes/micro_b1" train --init "$init" --data "$data" --steps 3 --save w4e.st > /dev/null
  cmp w4.st w4e.st
  echo "dist mpirun ok" ;;

ti) # DeiT-Ti's shape (192 wide, 3 heads), depth 2: 1 vs 2 vs 4 ranks from the same seeded init
  # (the qkv biases start at zero, so their key third is all noise: left out here, checked above)
  # from one step of training from the seeded init (so that no tensor is all zeros, as biases start)
  "$exes/ti_b4" train --data "$data" --steps 1 --seed 7 --lr 0.01 --save i.st > /dev/null
  # At lr 1e-4 (still 25 times DeiT's 5e-4 x 4 / 512): AdamW's first steps move an element by
  # about lr whatever its gradient's size, so an element whose gradient is all cancellation
  # (one of 110592 in blocks.0's qkv at lr 1e-3) turns fp32 reduction-order noise into a change
  # proportional to lr.
  "$exes/ti_b4" train --init i.st --data "$data" --steps 3 --lr 1e-4 --save w1.st > /dev/null
  "$launch" 2 "$exes/ti_b2" train --init i.st --data "$data" --steps 3 --lr 1e-4 --save w2.st > /dev/null
  "$launch" 4 "$exes/ti_b1" train --init i.st --data "$data" --steps 3 --lr 1e-4 --save w4.st --bucket-mb 0.1 > /dev/null
  for w in w2.st w4.st; do
    compare $w w1.st 1e-6 '!*qkv.bias'
    compare --delta i.st $w w1.st 2e-4 '!*qkv.bias' # the updates themselves
  done
  echo "dist ti ok" ;;

resume) # 2 ranks: checkpoint at step 2, resume to 5 == 5 straight (the resume crosses an epoch)
  x="$exes/micro_b2"
  "$launch" 2 "$x" train --data "$data" --steps 5 --save straight.st > /dev/null
  "$launch" 2 "$x" train --data "$data" --steps 2 --checkpoint c.st > /dev/null
  "$launch" 2 "$x" train --data "$data" --steps 5 --resume c.st --resume-override --save resumed.st > out.txt
  grep -q 'resuming from c.st at step 2' out.txt
  cmp straight.st resumed.st
  echo "dist resume ok" ;;

kill) # a rank killed (or hung) mid-run: the other exits non-zero within 60 s, naming it
  x="$exes/micro_b2"
  for victim in 1 0; do
    port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=0 "$x" train --data "$data" --steps 1000000 > /dev/null 2> e0.txt &
    p0=$!
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 "$x" train --data "$data" --steps 1000000 > /dev/null 2> e1.txt &
    p1=$!
    sleep 2
    if [ $victim = 1 ]; then kill -9 $p1; survivor=$p0; err=e0.txt; else kill -9 $p0; survivor=$p1; err=e1.txt; fi
    t0=$(date +%s)
    while kill -0 $survivor 2> /dev/null && [ $(( $(date +%s) - t0 )) -lt 60 ]; do sleep 0.1; done
    kill -9 $survivor 2> /dev/null && echo "rank $victim killed: the other still runs after 60 s"
    rc=0
    wait $survivor || rc=$?
    wait 2> /dev/null || true
    cat $err
    [ $rc -ne 0 ] && [ $rc -ne 137 ]
    grep -q "lost rank $victim" $err
  done
  # a hung rank (stopped): given up on after DEITC_DIST_TIMEOUT seconds
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
  export DEITC_DIST_TIMEOUT=3
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=0 "$x" train --data "$data" --steps 1000000 > /dev/null 2> e0.txt &
  p0=$!
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 "$x" train --data "$data" --steps 1000000 > /dev/null 2> e1.txt &
  p1=$!
  sleep 2
  kill -STOP $p1
  rc=0
  wait $p0 || rc=$?
  kill -9 $p1
  wait $p1 2> /dev/null || true
  cat e0.txt
  [ $rc -eq 1 ] && grep -q "rank 1 (pid $p1 on .*) sent nothing for 3 s" e0.txt
  echo "dist kill ok" ;;

env_errors) # the launcher's environment checked; a single process needs none of it
  x="$exes/micro_b4"
  ! RANK=0 "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'RANK is set but WORLD_SIZE is not' e.txt
  ! RANK=2 WORLD_SIZE=2 "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'rank 2 is not below the world size 2' e.txt
  ! RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=99999 "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'MASTER_PORT=99999' e.txt
  ! RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'MASTER_PORT is missing' e.txt
  # a rank that never comes: rank 0 names the missing ranks after DEITC_DIST_TIMEOUT
  ! DEITC_DIST_TIMEOUT=1 RANK=0 WORLD_SIZE=3 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000)) \
    "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'only 1 of 3 ranks connected within 1 s.*missing: 1 2' e.txt
  # mpirun-style variables without MASTER_*, and no libmpi to be found: says what to do
  ! OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=0 DEITC_MPI_LIBRARY=/nonexistent/libmpi.so "$x" train --data "$data" --steps 1 2> e.txt > /dev/null
  grep -q 'cannot load libmpi.*set MASTER_ADDR and MASTER_PORT' e.txt
  # ranks that disagree (here on --seed) stop before the first step, all of them, saying so
  port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
  x2="$exes/micro_b2"
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=0 "$x2" train --data "$data" --steps 2 --seed 1 > /dev/null 2> e0.txt &
  p0=$!
  rc1=0
  MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 "$x2" train --data "$data" --steps 2 --seed 2 > /dev/null 2> e1.txt || rc1=$?
  rc0=0
  wait $p0 || rc0=$?
  cat e0.txt e1.txt
  [ $rc0 -eq 1 ] && [ $rc1 -eq 1 ]
  grep -q '1 of 2 ranks (rank 1 first) disagree with rank 0 on the model, batch, dataset size, steps, resume step, seed' e0.txt
  grep -q 'disagree with rank 0' e1.txt
  ! "$x" train --data "$data" --steps 1 --bucket-mb 0 2> e.txt > /dev/null
  grep -q 'bucket-mb' e.txt
  # a world of 1 from the launcher is a single process: the same bits as no launcher at all
  "$x" train --data "$data" --steps 2 --save a.st > /dev/null
  RANK=0 WORLD_SIZE=1 "$x" train --data "$data" --steps 2 --save b.st > /dev/null
  cmp a.st b.st
  # and through the data-parallel path (DEITC_DIST=1: hooks, buckets, the comm thread) alone
  DEITC_DIST=1 "$x" train --data "$data" --steps 2 --save c.st --bucket-mb 0.01 > /dev/null
  cmp a.st c.st
  # the all-reduce alone, timed: one rank, and two
  "$x" allreduce --steps 3 | grep -q '^{"ranks":1,"buckets":1,"bytes":457000,'
  "$launch" 2 "$x" allreduce --steps 3 --bucket-mb 0.1 | grep -q '^{"ranks":2,"buckets":4,"bytes":457000,'
  echo "dist env errors ok" ;;
cuda_no_nccl) # a cuda executable (the hand-written tiny plan on fake_cuda.c's stand-in driver) on a
  # machine without libnccl: one process trains; two ranks are told NCCL is missing, and how to fix it
  export DEITC_LIBCUDA="$RT_FAKE_LIB" DEITC_CUBLASLT="$RT_FAKE_LIB" DEITC_NCCL_LIBRARY=/nonexistent/libnccl.so.2
  "$RT_FAKE_EXE" train --synthetic --steps 2 > out.txt
  grep -q 'trained 2 steps' out.txt
  rc=0
  DEITC_DEVICE=0 "$launch" 2 "$RT_FAKE_EXE" train --synthetic --steps 2 > /dev/null 2> e.txt || rc=$?
  cat e.txt
  [ $rc -eq 1 ]
  [ "$(grep -c 'gradient all-reduce needs NCCL: cannot load /nonexistent/libnccl.so.2.*DEITC_NCCL_LIBRARY' e.txt)" -eq 2 ]
  # the NCCL path itself, with a world of one (DEITC_DIST=1) on fake_cuda.c's one-rank libnccl:
  # both gradients of the tiny plan all-reduced each step, eagerly (step 1), captured in the
  # CUDA Graph (step 2) and replayed (steps 2, 3), and the same weights as without it
  "$RT_FAKE_EXE" train --synthetic --steps 3 --save a.st > /dev/null 2>&1
  DEITC_DIST=1 DEITC_NCCL_LIBRARY="$RT_FAKE_LIB" "$RT_FAKE_EXE" train --synthetic --steps 3 --save b.st > /dev/null 2> e.txt
  cat e.txt
  grep -q 'fake nccl: 6 all-reduces (2 captured), 180 bytes' e.txt
  grep -q '2 graph replays' e.txt
  cmp a.st b.st
  echo "dist cuda no nccl ok" ;;
*)
  echo "unknown mode $mode" >&2
  exit 2 ;;
esac

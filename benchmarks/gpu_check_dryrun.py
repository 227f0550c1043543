#!/usr/bin/env python3
"""gpu_check_dryrun.py: `gpu_check dry-run` and `gpu_check selftest` (here and in CI): prepare +
run with emu executables of micro models and a CPU (or fake) PyTorch, the checks of what came
back, and the fake deitc / executables / torch the selftest drives the whole script with.
Shares benchmarks/gpu_check's helpers (loaded as a module)."""
import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time


def _core():
    """benchmarks/gpu_check (a script without .py) as a module; its names are this file's too."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_check")
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_loader("gpu_check", importlib.machinery.SourceFileLoader("gpu_check", path))
        mod = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["gpu_check"]


globals().update({k: v for k, v in vars(_core()).items() if not k.startswith("__")})
globals().update({k: v for k, v in vars(sibling("gpu_check_prepare")).items() if not k.startswith("__")})


# ---- dry-run ---------------------------------------------------------------------------------------

def cmd_dry_run(args):
    """prepare + run with emu executables of micro models, then checks what came back. With
    --expect-fail REGEX it passes only when the run FAILED with a failure matching REGEX and
    results.md still holds every other step's results (a step made to raise or time out)."""
    base = tempfile.mkdtemp(prefix="gpu_check_dry.")
    pkg, out = os.path.join(base, "pkg"), os.path.join(base, "out")
    t0 = time.monotonic()
    try:
        python = args.python or pick_torch_python()
        if args.require_torch:
            why = torch_too_old(python, args.require_torch)
            if why:
                log("dry-run: SKIPPED: %s (set DEITC_TORCH_PYTHON to a python with torch>=%s and timm)"
                    % (why, args.require_torch))
                return SKIP_RC
        pargs = argparse.Namespace(dir=pkg, dry_run=True, force=True, deitc=args.deitc, build_dir=args.build_dir,
                                   build_type=args.build_type, testdata=args.testdata, arch=None, cmake_arg=args.cmake_arg,
                                   precisions=args.precisions, fuse=args.fuse, models="", strip=True,
                                   jobs=args.jobs, nvrtc_cache=args.nvrtc_cache, op_kernel_test=args.op_kernel_test)
        rc = cmd_prepare(pargs)
        if rc:
            log("dry-run: prepare failed (exit %d); its log:" % rc)
            with open(os.path.join(pkg, "prepare_log.txt")) as f:
                log(f.read()[-6000:])
            return 1
        fake = args.fake_torch or not has_torch(python)
        if fake and not args.fake_torch:
            log("dry-run: no torch for %s: the PyTorch baseline is faked" % python)
        # run the copy in DIR, with nothing but DIR, as on the GPU machine
        argv = [sys.executable, os.path.join(pkg, "gpu_check"), "run", pkg, out, "--python", python,
                "--bench-steps", "3", "--bench-warmup", "1", "--torch-steps", "3", "--torch-warmup", "1",
                "--torch", args.torch]
        for flag, v in (("--torch-modes", ",".join(args.torch_modes or [])), ("--raise-in", args.raise_in),
                        ("--fake-torch-hang", args.fake_torch_hang), ("--torch-limit", args.torch_limit)):
            if v:
                argv += [flag, str(v)]
        if fake:
            argv.append("--fake-torch")
        log("dry-run: " + " ".join(argv))
        r = subprocess.run(argv, cwd=pkg)
        probs = verify_dry_run(out, os.path.join(pkg, "manifest.json"), args.expect_fail, fake, args.torch_modes)
        if not args.expect_fail and r.returncode != 0:
            probs.insert(0, "gpu_check run exited %d" % r.returncode)
        if args.expect_fail and r.returncode != 1:
            probs.insert(0, "gpu_check run exited %d, expected 1 (a failure)" % r.returncode)
        what = " (expecting the run to FAIL on /%s/ and keep the other steps' results)" % args.expect_fail \
            if args.expect_fail else ""
        log("dry-run%s: %s in %.0f s" % (what, "PASS" if not probs else "FAIL", time.monotonic() - t0))
        for p in probs:
            log("  " + p)
        if probs and os.path.exists(os.path.join(out, "log.txt")):
            with open(os.path.join(out, "log.txt")) as f:
                log("--- log.txt (tail)\n" + f.read()[-6000:])
        return 1 if probs else 0
    finally:
        if args.keep:
            log("dry-run files kept in " + base)
        else:
            shutil.rmtree(base, ignore_errors=True)


def has_torch(py):
    try:
        return subprocess.run([py, "-c", "import torch"], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def torch_too_old(py, need):
    """None when py has torch >= need (a major version) and timm; else why not."""
    if not py or not os.path.exists(py):
        return "no python at %s" % py
    try:
        r = subprocess.run([py, "-c", "import torch, timm; print(torch.__version__)"], capture_output=True,
                           text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "%s: %s" % (py, e)
    if r.returncode != 0:
        return "%s has no torch with timm (%s)" % (py, (r.stderr.strip().splitlines() or ["?"])[-1])
    v = r.stdout.strip()
    m = re.match(r"(\d+)", v)
    if not m or int(m.group(1)) < int(need):
        return "%s has torch %s, older than %s" % (py, v, need)
    return None


def pick_torch_python():
    """A python that has torch, for the CPU baseline of the dry-run; else ours (faked then)."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and os.path.exists(py) and has_torch(py):
            return py
    return sys.executable


def verify_dry_run(out, manifest_path, expect_fail=None, fake=True, torch_modes=None):
    """Problems with what a dry run wrote. expect_fail: a regex one failure must match; the
    step that failed may then lack its results, every other step must have them."""
    probs = []
    for f in ("results.md", "results.json", "log.txt"):
        if not os.path.isfile(os.path.join(out, f)):
            probs.append("no %s" % f)
    if probs:
        return probs
    with open(os.path.join(out, "results.json")) as f:
        d = json.load(f)
    with open(manifest_path) as f:
        man = json.load(f)
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    hit = [x for x in d["failures"] if expect_fail and re.search(expect_fail, x)]
    if expect_fail:
        if not hit:
            probs.append("no failure matches /%s/: %s" % (expect_fail, d["failures"]))
        if "verdict: FAIL" not in md:
            probs.append("results.md does not say 'verdict: FAIL'")
        others = [x for x in d["failures"] if x not in hit]
        if others:
            probs.append("other failures than the expected one: %s" % others)
    failed_step = {x.split()[1] for x in hit if x.startswith("step ")}
    failed_kinds = {k.split(":")[0] for k in failed_step} | {x.split()[0] for x in hit}

    def expected(kind):
        return kind not in failed_kinds

    if expected("correctness"):
        if not d["correctness"]:
            probs.append("no correctness rows")
        for r in d["correctness"]:
            for part in ("device", "emu", "device_vs_emu"):
                if not (r.get(part) or {}).get("pass"):
                    probs.append("correctness %s/%s %s did not pass" % (r["precision"], r["fuse"], part))
    if expected("bench"):
        if len(d["bench"]) != len(man["bench"]) or not d["bench"]:
            probs.append("%d bench rows for %d executables" % (len(d["bench"]), len(man["bench"])))
        for b in d["bench"]:
            if not b.get("images_per_s") or not b.get("step_ms_median"):
                probs.append("bench %s: no images/s or step time (%s)" % (b["exe"], b.get("error")))
    if man.get("attention") and expected("attention"):
        a = d.get("attention") or {}
        for which in ("fused", "unfused"):
            r = a.get(which) or {}
            if r.get("total_ms") is None or not r.get("rows"):
                probs.append("attention %s: no profile or no attention kernels (%s)" % (which, r.get("error")))
        f, u = a.get("fused") or {}, a.get("unfused") or {}
        if f.get("rows") and not any(x["what"].split("_", 1)[-1].startswith("attention") for x in f["rows"]):
            probs.append("attention fused: no fused attention kernel in its profile: %s" % f["rows"])
        if u.get("rows") and any(x["what"].split("_", 1)[-1].startswith("attention") for x in u["rows"]):
            probs.append("attention unfused: a fused attention kernel in its profile: %s" % u["rows"])
        if "## Attention: fused" not in md:
            probs.append("results.md lacks the attention section")
    if man.get("data") and expected("data"):
        r = d.get("data") or {}
        for which in ("bench", "bench_data"):
            x = r.get(which) or {}
            if not x.get("step_ms_median") or not x.get("images_per_s") or x.get("host_syncs_per_step") is None:
                probs.append("data %s: no step time, images/s or host syncs (%s)" % (which, x.get("error") or r.get("error")))
        if not r.get("step_ratio") or len(r.get("table") or []) < 3:
            probs.append("data: no bench --data / bench ratio or no bench_dataload table (%s)" % r.get("table_error"))
        tool = os.path.join(os.path.dirname(manifest_path), man["data"]["tool"])
        size = os.path.getsize(tool) if os.path.isfile(tool) else None
        limit = sibling("gpu_check_data").TOOL_MAX_BYTES
        if size is None or size > limit:
            probs.append("data: %s is %s bytes, over the %d its room in the real package allows" % (tool, size, limit))
        if "## Data path:" not in md or "bench --data / bench (step time) = " not in md:
            probs.append("results.md lacks the data path section or its ratio")
    torch_steps = [s for s in plan_steps(man, d.get("torch_choice") or "all") if s["id"].startswith("torch")]
    want_torch = {(s["id"].split(":")[1], m) for s in torch_steps for m in s["modes"]
                  if not torch_modes or m in torch_modes}
    excused = {(s["id"].split(":")[1], m) for s in torch_steps if s["id"] in failed_step for m in s["modes"]}
    got_torch = {(t["model"], t["mode"]) for t in d["torch"] if t.get("images_per_s")}
    for model, mode in sorted(want_torch - got_torch - excused):
        if not any(x.startswith("torch %s %s:" % (model, mode)) for x in hit):
            probs.append("torch %s %s has no numbers" % (model, mode))
    for t in d["torch"]:
        llp = t.get("ld_library_path") or ""
        if os.path.join(os.path.dirname(manifest_path), "lib") in llp.split(":"):
            probs.append("torch %s %s ran with the package's lib on LD_LIBRARY_PATH (%s)" % (t["model"], t["mode"], llp))
        if not fake and not t.get("error") and t.get("fake"):
            probs.append("torch %s %s: fake numbers in a run with real torch" % (t["model"], t["mode"]))
    if (man.get("op_kernels") or {}).get("included"):
        first = md.splitlines()[0] if md else ""
        if not first.startswith("per-op kernel test: ") or (expected("per-op") and "passed" not in first):
            probs.append("results.md's first line is not the per-op kernel test's result: %r" % first)
    elif not md.startswith("per-op kernel test: not in this package"):
        probs.append("results.md does not start with 'per-op kernel test: not in this package'")
    total = sum(s["limit_s"] for s in d["plan"])
    if d.get("elapsed_s", 0) > total + 30:
        probs.append("run took %.0f s, over its steps' limits (%d s)" % (d["elapsed_s"], total))
    for must in ("## Correctness", "## Throughput", "## PyTorch baselines", "| model | batch |", "Cost model:"):
        if must not in md:
            probs.append("results.md lacks '%s'" % must)
    return probs


# ---- a fake deitc (the selftest's end-to-end run of prepare + run without the real compiler) -----

def cmd_fake_deitc(argv):
    """deitc stand-in: `inspect` prints MACs; `compile` writes a shell-script EXE that calls
    _fake_exe, and rejects fp16 with --fuse none, as a compiler without that setting would."""
    if argv[:1] == ["inspect"]:
        print("MACs per image: 0.001 G (1234567)")
        return 0
    if argv[:1] != ["compile"]:
        print("fake deitc: unknown command", file=sys.stderr)
        return 2
    opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
    if opt.get("--precision") == "fp16" and opt.get("--fuse") == "none":
        print("deitc: --precision fp16 with --fuse none is not supported", file=sys.stderr)
        return 1
    with open(opt["-o"], "w") as f:
        f.write("#!/bin/sh\nexec %s %s _fake_exe --precision %s --name \"$0\" \"$@\"\n" % (
            sys.executable, os.path.abspath(__file__), opt.get("--precision", "fp32")))
    os.chmod(opt["-o"], 0o755)
    return 0


def cmd_fake_exe(argv):
    """EXE stand-in: `train` writes the oracle's own answers (off by a little in low
    precision), `bench` a JSON line, `info` a line. GPU_CHECK_FAKE_GRAPH_FAIL=1: train and bench
    fail as a cuBLASLt call inside graph capture does, unless given --no-graph."""
    prec, name, cmd = argv[2], argv[4], argv[5]  # _fake_exe --precision P --name PATH CMD ...
    opt = {argv[i]: argv[i + 1] for i in range(6, len(argv) - 1) if argv[i].startswith("--")}
    graph = "--no-graph" not in argv and "emuref" not in os.path.basename(name)  # the emu twins have none
    if graph and os.environ.get("GPU_CHECK_FAKE_GRAPH_FAIL") == "1" and cmd in ("train", "bench"):
        print("EXE: error: cublasLtMatmul failed: CUBLAS_STATUS_NOT_SUPPORTED (status 15) (plan step 7: qkv; "
              "m 64 n 96 k 32 batch 1; while capturing the step as a CUDA Graph: --no-graph runs it without one)",
              file=sys.stderr)
        return 1
    if cmd == "bench":
        print("fake bench")
        if "--profile" in argv:  # the layout of rt_exe_cmd_bench's profile; unfused: no fused kernels
            print("profile (each plan step timed alone, mean of 3 steps): 5.000 ms a step; kernels 60.0%, GEMMs "
                  "40.0%, zero fills 0.0%")
            print("  %10s %6s %6s  %s" % ("ms/step", "%", "calls", "what"))
            rows = ([(1.0, 4, "gemm m 17 n 17 k 16 batch 8 NT"), (0.5, 2, "k010_softmax"), (0.4, 2, "k011_permute"),
                     (0.2, 2, "k012_slice")] if "no-qkv-attention" in os.path.basename(name) else
                    [(0.8, 2, "k020_attention_kv_resident"), (0.6, 2, "k021_attention_bwd_mma_dkv")])
            for ms, calls, what in rows + [(3.1, 10, "gemm m 68 n 96 k 32 batch 1 NN")]:
                print("  %10.3f %6.1f %6d  %s" % (ms, 100 * ms / 5.0, calls, what))
        print(json.dumps({"median_ms": 5.0, "min_ms": 4.9, "max_ms": 5.5, "images_per_s": 800.0,
                          "device_memory_bytes": 12345678, "graph": graph, "startup_wall_ms": 12.5}))
        return 0
    if cmd == "info":
        print("fake executable, precision " + prec)
        return 0
    data = os.path.dirname(opt["--init"])
    losses = list(st_read(os.path.join(data, "expected.safetensors"))["losses"][2])
    off = 0.0 if prec == "fp32" else 1e-3
    with open(opt["--metrics"], "w") as f:
        for k, x in enumerate(losses[:int(opt["--steps"])], 1):
            f.write(json.dumps({"step": k, "loss": x + off}) + "\n")
    shutil.copy(os.path.join(data, "after_steps.safetensors"), opt["--save"])
    return 0


# ---- selftest (no deitc needed) -------------------------------------------------------------------

def cmd_selftest(args):
    fails = []

    def check(cond, what):
        if not cond:
            fails.append(what)
            log("  FAIL " + what)

    d = tempfile.mkdtemp(prefix="gpu_check_selftest.")
    try:
        # safetensors round trip, bf16/f16 decoding, comparisons
        p = os.path.join(d, "a.safetensors")
        st_write(p, {"w": ("F32", [2, 2], [1.0, -2.5, 3.25, 0.0]), "labels": ("I64", [3], [1, 2, 9])})
        t = st_read(p)
        check(list(t["w"][2]) == [1.0, -2.5, 3.25, 0.0] and t["w"][1] == [2, 2], "F32 round trip")
        check(list(t["labels"][2]) == [1, 2, 9], "I64 round trip")
        check(list(st_decode("BF16", struct.pack("<2H", 0x3F80, 0xC020))) == [1.0, -2.5], "BF16 decode")
        check(st_decode("F16", struct.pack("<2e", 0.5, -3.0)) == [0.5, -3.0], "F16 decode")
        check(max_abs_diff([1, 2, 3], [1, 2.5, 3]) == 0.5, "max_abs_diff")
        check(max_abs_diff([float("nan")], [1]) == float("inf"), "NaN is an infinite error")
        w, name, probs = compare_weights({"a": ("F32", [2], [1, 2])}, {"a": ("F32", [2], [1, 2.1]), "b": ("F32", [1], [0])})
        check(abs(w - 0.1) < 1e-9 and name == "a" and len(probs) == 1, "compare_weights: %s %s %s" % (w, name, probs))
        # oracle files parse, and hold what correctness needs
        td = os.environ.get("DEITC_TESTDATA") or os.path.join(repo_root(), "tests", "data")
        if os.path.isdir(os.path.join(td, "deit_micro")):
            e = st_read(os.path.join(td, "deit_micro", "expected.safetensors"))
            a = st_read(os.path.join(td, "deit_micro", "after_steps.safetensors"))
            _, cfg = micro_defines(td)
            check(len(e["losses"][2]) == cfg["steps"], "expected.safetensors has losses[steps]")
            check("head.weight" in a and "blocks.0.attn.qkv.weight" in a, "after_steps has timm names")
        # metrics
        m = os.path.join(d, "m.jsonl")
        with open(m, "w") as f:
            f.write('{"step": 2, "loss": 2.25, "lr": 0.001}\n\n{"step": 1, "loss": 2.5}\n')
        check(read_losses(m) == [2.5, 2.25], "read_losses orders by step")
        # bench JSON spellings
        b = parse_bench('warming up\n{"median_ms": 10.0, "min_ms": 9.5, "max_ms": 11, "images_per_s": 25600, '
                        '"device_memory_bytes": 1073741824}\n', 256)
        check(b and b["step_ms_median"] == 10.0 and b["step_ms_min"] == 9.5 and b["images_per_s"] == 25600
              and b["device_memory_bytes"] == 2 ** 30, "parse_bench flat: %s" % b)
        b = parse_bench('{"step_time": {"median_s": 0.02, "min_s": 0.019, "max_s": 0.03}, "peak_device_memory_mib": 512}', 128)
        check(b and abs(b["step_ms_median"] - 20) < 1e-9 and abs(b["images_per_s"] - 6400) < 1e-6
              and b["device_memory_bytes"] == 512 * 2 ** 20, "parse_bench nested: %s" % b)
        check(parse_bench("no json here", 4) is None, "parse_bench without JSON")
        prof = parse_profile("x\nprofile (each plan step timed alone, mean of 2 steps): 3.000 ms a step; ...\n"
                             "     ms/step      %  calls  what\n       1.500   50.0     24  k003_attention_kv_resident\n"
                             "       0.500   16.7     12  gemm m 197 n 197 k 64 batch 1536 NT\n"
                             "       0.250    8.3     12  k004_permute\n       0.750   25.0     48  gemm m 50432 n 384 "
                             "k 384 batch 1 NN\n")
        part = attention_part(prof or [])
        check(prof and len(prof) == 4 and prof[0]["calls"] == 24 and part["attention_ms"] == 2.0 and
              part["layout_ms"] == 0.25 and part["attention_launches"] == 36 and part["total_ms"] == 3.0,
              "parse_profile + attention_part: %s %s" % (prof, part))
        check(parse_profile("no profile") is None and profile_kind("k010_softmax_grad") == "attention" and
              profile_kind("k011_layer_norm") == "other", "profile_kind")
        # peaks, flops
        check(peak_for("NVIDIA H100 80GB HBM3")[1]["bf16"] == 989, "H100 SXM peak")
        check(peak_for("NVIDIA H100 PCIe")[0] == "H100 PCIe", "H100 PCIe first")
        check(peak_for("NVIDIA H200")[1]["fp32"] == 67, "H200 = H100")
        check(peak_for("NVIDIA A100-SXM4-80GB")[1]["fp16"] == 312, "A100")
        check(peak_for("Tesla T4") == (None, None), "unknown GPU")
        check(abs(tflops(1000, 1.26e9) - 7.56) < 1e-9, "tflops")
        check(peak_for("NVIDIA H200")[0].startswith("H200") and peak_for("NVIDIA H200")[1]["hbm_tb_s"] == 4.8,
              "an H200 is named an H200, with its own bandwidth")
        check(mfu_cells(67.0, "fp32", PEAKS[2][2]) == ("6.8%", "100.0% of fp32 67"), "fp32 MFU on both scales: %s"
              % (mfu_cells(67.0, "fp32", PEAKS[2][2]),))
        check(mfu_cells(98.9, "bf16", PEAKS[2][2]) == ("10.0%", "="), "bf16 MFU against the 16-bit peak")
        # today's matrix (fp32; --fuse none the same binary): the two-call plan fits, the first
        # call under 6 minutes with its machine start; deitc comes before any PyTorch step
        man = {"dry_run": False, "settings": [{"precision": p, "fuse": f} for p in SETTINGS_PRECISIONS
                                              for f in SETTINGS_FUSE],
               "oracle": [{"role": r, "precision": p, "fuse": f} for p in SETTINGS_PRECISIONS
                          for f in SETTINGS_FUSE for r in ("device", "emu")],
               "bench": [dict(MODELS[m], model=m, exe="bin/%s-%s-%s" % (m, p, f), precision=p, fuse=f)
                         for m in MODELS for p in SETTINGS_PRECISIONS for f in SETTINGS_FUSE],
               "op_kernels": {"included": True}}
        man1 = dict(man, settings=[{"precision": "fp32", "fuse": "all"}, {"precision": "fp32", "fuse": "none"}],
                    oracle=[dict(o, same_as="x" if o["fuse"] == "none" else None) for o in man["oracle"]
                            if o["precision"] == "fp32"],
                    bench=[dict(b, same_as="x" if b["fuse"] == "none" else None) for b in man["bench"]
                           if b["precision"] == "fp32"])
        calls = device_calls(man1, "build-gpu/pkg")
        check(not calls_over(calls) and calls[0]["planned_s"] < CALL1_TARGET_S,
              "today's plan fits: %s" % [(c["planned_s"], c["limits_s"]) for c in calls])
        ids = [st[0] for st in calls[0]["steps"]]
        check(ids[0] == "op_kernels" and not any(i.startswith("torch") for i in ids) and
              any(i.startswith("bench:") for i in ids), "call 1: per-op kernels first, deitc only: %s" % ids)
        ids2 = [st[0] for st in calls[1]["steps"]]
        check(ids2 == ["env", "torch-eager:deit_small", "torch-compile:deit_small", "report"],
              "call 2: PyTorch for DeiT-S alone: %s" % ids2)
        full = plan_steps(man1, "all")
        first_torch = min(i for i, st in enumerate(full) if st["id"].startswith("torch"))
        check(all(not st["id"].startswith(("bench", "correctness", "op_kernels")) for st in full[first_torch:]),
              "one call with --torch all: every deitc step before the first PyTorch one")
        check("--torch none" in calls[0]["command"] and "--skip op_kernels,correctness,bench" in calls[1]["command"]
              and calls[0]["carry"] == ["build-gpu/pkg"] and calls[0]["timeout_s"] <= 600, "the calls' commands")
        log("  " + format_calls(calls).replace("\n", "\n  "))
        # the full future matrix (3 precisions x 2 fusions, all distinct) does not fit one call:
        # prepare says so rather than sending it
        over = calls_over(device_calls(man, "build-gpu/pkg"))
        check(over and "first call" in over[0], "full matrix: the plan is refused: %s" % over)
        # the runner's time limit
        r = Runner(os.path.join(d, "log.txt"))
        t0 = time.monotonic()
        res = r(["sleep", "30"], 1, quiet=True)
        check(res.timed_out and time.monotonic() - t0 < 10, "Runner enforces the limit")
        res = r(["sh", "-c", "echo hi; exit 3"], 10, quiet=True)
        check(res.rc == 3 and res.out.strip() == "hi" and not res.timed_out, "Runner rc and output")
        # results.md renders from a minimal result
        data = {"started": "x", "gpu": {"name": "NVIDIA H100 80GB HBM3", "peak_tflops": PEAKS[2][2], "peak_label": "H100"},
                "failures": [], "elapsed_s": 1, "steps": [{"id": "env", "limit_s": 10, "wall_s": 0.1}],
                "correctness": [{"precision": "fp32", "fuse": "all", "tolerance": TOLERANCES["fp32"],
                                 "device": {"pass": True, "loss_err": 1e-6, "weight_err": 1e-5}}],
                "bench": [{"model": "deit_tiny", "batch": 256, "precision": "bf16", "fuse": "all", "images_per_s": 9000.0,
                           "step_ms_median": 28.4, "step_ms_min": 28.0, "step_ms_max": 29.0,
                           "device_memory_bytes": 2 ** 33, "tflops": tflops(9000, 1.26e9), "deitc_compile_s": 3.0}],
                "torch": [{"model": "deit_tiny", "mode": "eager-bf16", "images_per_s": 6000.0, "step_ms_median": 42.0,
                           "step_ms_min": 41.0, "step_ms_max": 43.0, "device_memory_bytes": None,
                           "tflops": tflops(6000, 1.26e9)}]}
        md = render_md(data, {"oracle_config": {"steps": 3}, "git": {}, "skipped": [{"what": "fp16/none", "reason": "r"}]})
        check("| deit_tiny | 256 | bf16 | all | 9000.0 |" in md and "1.50x" in md, "results.md row and ratio")
        check(md.startswith("per-op kernel test: not in this package") and "Cost model: none yet" in md and
              "MFU (16-bit peak)" in md, "results.md: the per-op kernel line first, the cost model's place, MFU")
        # ldd: a library that only a private folder has is "not found" until copy_libs copies it
        if shutil.which("cc"):
            lp = os.path.join(d, "ldd")
            os.makedirs(os.path.join(lp, "pkg", "bin"))
            with open(os.path.join(lp, "foo.c"), "w") as f:
                f.write("int foo(void) { return 0; }\n")
            with open(os.path.join(lp, "m.c"), "w") as f:
                f.write("int foo(void);\nint main(void) { return foo(); }\n")
            exe = os.path.join(lp, "pkg", "bin", "m")
            r1 = subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(lp, "libgcfoo.so"),
                                 os.path.join(lp, "foo.c")], capture_output=True)
            r2 = subprocess.run(["cc", "-o", exe, os.path.join(lp, "m.c"), "-L" + lp, "-lgcfoo"], capture_output=True)
            if r1.returncode == 0 and r2.returncode == 0:
                probs = check_ldd(os.path.join(lp, "pkg"), quiet=True)
                check(len(probs) == 1 and "libgcfoo.so not found" in probs[0], "ldd check finds a missing library: %s" % probs)
                old = os.environ.get("LD_LIBRARY_PATH")
                os.environ["LD_LIBRARY_PATH"] = lp
                try:
                    copied, missing = copy_libs([exe], os.path.join(lp, "pkg", "lib"))
                finally:
                    if old is None:
                        del os.environ["LD_LIBRARY_PATH"]
                    else:
                        os.environ["LD_LIBRARY_PATH"] = old
                check(list(copied) == ["libgcfoo.so"] and not missing, "copy_libs copies it (and no glibc): %s" % copied)
                check(not check_ldd(os.path.join(lp, "pkg"), quiet=True), "ldd check passes once copied")
        # prepare + run end to end with the fake deitc
        fake = os.path.join(d, "deitc")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\nexec %s %s _fake_deitc \"$@\"\n" % (sys.executable, os.path.abspath(__file__)))
        os.chmod(fake, 0o755)
        pkg, out = os.path.join(d, "pkg"), os.path.join(d, "out")
        r = subprocess.run([sys.executable, GPU_CHECK, "prepare", pkg, "--dry-run", "--deitc", fake,
                            "--testdata", td], capture_output=True, text=True)
        check(r.returncode == 0, "prepare with the fake deitc: %s" % r.stdout[-2000:])
        # a build whose op_kernel_test cannot make its package: prepare fails and says why
        r2 = subprocess.run([sys.executable, GPU_CHECK, "prepare", os.path.join(d, "pkg_opk"), "--dry-run", "--deitc",
                             fake, "--testdata", td, "--op-kernel-test", shutil.which("false") or "/bin/false"],
                            capture_output=True, text=True)
        check(r2.returncode == 1 and "op_kernel_test --make-cuda-package failed" in r2.stdout,
              "prepare fails when the per-op kernel package cannot be made: %s" % r2.stdout[-1500:])
        if r.returncode == 0:
            man = json.load(open(os.path.join(pkg, "manifest.json")))
            check(len(man["settings"]) == 5 and any("fp16/none" in s["what"] for s in man["skipped"]),
                  "the rejected setting is skipped and said so")
            r = subprocess.run([sys.executable, os.path.join(pkg, "gpu_check"), "run", pkg, out, "--fake-torch"],
                               capture_output=True, text=True, cwd=d)
            check(r.returncode == 0, "run with fake executables: %s" % r.stdout[-3000:])
            probs = verify_dry_run(out, os.path.join(pkg, "manifest.json"))
            check(not probs, "fake run's results: %s" % probs)
            md = open(os.path.join(out, "results.md")).read() if os.path.exists(os.path.join(out, "results.md")) else ""
            check("fp16/none" in md and "800.0" in md, "results.md names the skipped setting and the numbers")
            # graph capture failing (cuBLASLt inside it): each run falls back to --no-graph and
            # reports the graph run's error beside the eager numbers; the verdict is FAIL
            env = dict(os.environ, GPU_CHECK_FAKE_GRAPH_FAIL="1")
            out2 = os.path.join(d, "out_graph")
            r = subprocess.run([sys.executable, os.path.join(pkg, "gpu_check"), "run", pkg, out2, "--fake-torch",
                                "--torch", "none"], capture_output=True, text=True, cwd=d, env=env)
            res = json.load(open(os.path.join(out2, "results.json")))
            md = open(os.path.join(out2, "results.md")).read()
            check(r.returncode == 1 and res["bench"] and all(b.get("images_per_s") == 800.0 and b.get("graph") is False
                                                             and "plan step 7" in b.get("graph_error", "")
                                                             for b in res["bench"]),
                  "bench falls back to --no-graph with both results: %s" % res["bench"][:1])
            check(all("graph_error" in (c.get("device") or {}) and c["device"]["pass"] for c in res["correctness"]),
                  "oracle runs fall back to --no-graph: %s" % res["correctness"][:1])
            check("--no-graph; CUDA Graph run failed: exit 1: EXE: error: cublasLtMatmul failed" in md and
                  "verdict: FAIL" in md and not res["torch"], "results.md shows both, --torch none runs no PyTorch")
            # the second call (PyTorch alone) merged with the first gives the ratios
            out3, merged = os.path.join(d, "out_torch"), os.path.join(d, "merged")
            r = subprocess.run([sys.executable, os.path.join(pkg, "gpu_check"), "run", pkg, out3, "--fake-torch",
                                "--torch", "small", "--skip", ",".join(DEITC_KINDS)], capture_output=True, text=True, cwd=d)
            res = json.load(open(os.path.join(out3, "results.json")))
            check(r.returncode == 0 and not res["bench"] and {t["model"] for t in res["torch"]} == {"micro_b"},
                  "--torch small: DeiT-S's stand-in alone: %s" % r.stdout[-1500:])
            out4 = os.path.join(d, "out_deitc")
            r = subprocess.run([sys.executable, os.path.join(pkg, "gpu_check"), "run", pkg, out4, "--torch", "none"],
                               capture_output=True, text=True, cwd=d)
            r = subprocess.run([sys.executable, GPU_CHECK, "merge", out4, out3, "--out", merged],
                               capture_output=True, text=True)
            md = open(os.path.join(merged, "results.md")).read() if os.path.exists(os.path.join(merged, "results.md")) else ""
            check(r.returncode == 0 and "| micro_b | 4 | fp32 | all (same binary as micro_a-fp32-all) | 800.0 |" in md
                  and "| 100.0 | 8.00x |" in md and "verdict: PASS" in md,
                  "merge: one table with the ratios: %s" % (r.stdout + r.stderr)[-2500:])
    finally:
        shutil.rmtree(d, ignore_errors=True)
    log("selftest: %s" % ("PASS" if not fails else "%d FAILED" % len(fails)))
    return 1 if fails else 0


if __name__ == "__main__":  # the fake deitc and executables the selftest writes call this file
    if sys.argv[1:2] == ["_fake_deitc"]:
        sys.exit(cmd_fake_deitc(sys.argv[2:]))
    if sys.argv[1:2] == ["_fake_exe"]:
        sys.exit(cmd_fake_exe(sys.argv[1:]))
    sys.exit("gpu_check_dryrun.py: run it as `benchmarks/gpu_check dry-run|selftest`")

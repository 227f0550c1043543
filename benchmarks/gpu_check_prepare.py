#!/usr/bin/env python3
"""gpu_check_prepare.py: `gpu_check prepare` (here, never on the GPU machine): builds deitc,
compiles the benchmark matrix and the oracle case, packages the per-op kernel test when the build
has it, copies libraries, data and the scripts into DIR, and prints the two device calls to make.
Shares benchmarks/gpu_check's helpers (loaded as a module)."""
import glob
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


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


# ---- prepare (runs here) ---------------------------------------------------------------------

def git_info(root):
    def git(*a):
        try:
            return subprocess.run(["git", "-C", root] + list(a), capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
    head = git("rev-parse", "HEAD")
    st = git("status", "--porcelain")
    return {"commit": head.stdout.strip() if head and head.returncode == 0 else None,
            "dirty_files": len(st.stdout.splitlines()) if st and st.returncode == 0 else None}


def build_deitc(root, build_dir, build_type, run, cmake_args=()):
    log("building deitc in %s (%s)" % (build_dir, build_type))
    r = run(["cmake", "-S", root, "-B", build_dir, "-DCMAKE_BUILD_TYPE=" + build_type] + list(cmake_args), 300,
            quiet=True)
    if not r.ok():
        raise SystemExit("gpu_check: cmake configure failed (%s); see the log" % r.why())
    r = run(["cmake", "--build", build_dir, "-j2", "--target", "deitc"], 1800, quiet=True)
    if not r.ok():
        raise SystemExit("gpu_check: building deitc failed (%s)" % r.why())
    exe = os.path.join(build_dir, "deitc")
    if not os.access(exe, os.X_OK):
        raise SystemExit("gpu_check: no deitc at %s after the build" % exe)
    return exe


def micro_defines(testdata):
    with open(os.path.join(testdata, "deit_micro", "config.json")) as f:
        cfg = json.load(f)
    return {k: cfg[k] for k in MICRO_KEYS}, cfg


def inspect_macs(deitc, model_path, defines, run):
    r = run([deitc, "inspect", model_path] + dflags(defines), 120, quiet=True)
    m = re.search(r"MACs per image:\s*[0-9.]+\s*G\s*\((\d+)\)", r.out)
    return int(m.group(1)) if m else None


def dflags(defines):
    out = []
    for k, v in defines.items():
        out += ["-D", "%s=%s" % (k, v)]
    return out


def compile_exe(deitc, model_path, defines, out, target, arch, batch, precision, fuse, run, limit=1800):
    argv = [deitc, "compile", model_path] + dflags(defines) + ["-o", out, "--target", target,
                                                               "--batch", str(batch), "--precision", precision,
                                                               "--fuse", fuse]
    if target == "cuda" and arch:
        argv += ["--arch", arch]
    t0 = time.monotonic()
    r = run(argv, limit, quiet=True, env=COMPILE_ENV)
    dt = time.monotonic() - t0
    ok = r.ok() and os.path.isfile(out)
    return ok, dt, (None if ok else r.why()), " ".join(str(a) for a in argv[1:])


def copy_libs(exes, libdir):
    """Copies every shared library the executables need that a bare CUDA machine may lack."""
    os.makedirs(libdir, exist_ok=True)
    copied, missing = {}, []
    for exe in exes:
        for soname, path in ldd_libs(exe):
            if SYSTEM_LIBS.match(soname) or DLOPENED_LIBS.match(soname):
                continue
            if path is None:
                missing.append("%s needs %s, which is not found here either" % (os.path.basename(exe), soname))
                continue
            if soname not in copied:
                shutil.copy2(os.path.realpath(path), os.path.join(libdir, soname))
                copied[soname] = path
    return copied, missing


def dir_size(d):
    total = 0
    for base, _, files in os.walk(d):
        for f in files:
            p = os.path.join(base, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def cmd_prepare(args):
    root = repo_root()
    pkg = os.path.abspath(args.dir)
    dry = args.dry_run
    if os.path.exists(pkg) and os.listdir(pkg) and not args.force:
        raise SystemExit("gpu_check: %s exists and is not empty (use --force to replace it)" % pkg)
    if os.path.exists(pkg):
        shutil.rmtree(pkg)
    for sub in ("bin", "lib", "data/deit_micro"):
        os.makedirs(os.path.join(pkg, sub))
    run = Runner(os.path.join(pkg, "prepare_log.txt"))
    testdata = args.testdata or os.environ.get("DEITC_TESTDATA") or os.path.join(root, "tests", "data")
    deitc = args.deitc or (None if args.build_dir else os.environ.get("DEITC_BIN"))
    built_here = not deitc
    if not deitc:
        deitc = build_deitc(root, args.build_dir or os.path.join(root, "build-gpu"), args.build_type, run,
                            args.cmake_arg or [])
    deitc = os.path.abspath(deitc)
    target = "emu" if dry else "cuda"
    arch = None if dry else args.arch
    if getattr(args, "nvrtc_cache", False):
        COMPILE_ENV.pop("DEITC_NO_CACHE", None)
    micro, cfg = micro_defines(testdata)
    precisions = [p for p in args.precisions.split(",") if p]
    fuses = [f for f in args.fuse.split(",") if f]
    log("gpu_check prepare: %s, target %s%s, deitc %s" % (pkg, target, " " + arch if arch else "", deitc))

    # 1. which settings does the compiler take? Try each on the micro oracle case; the
    #    executable it writes is the oracle case's cuda executable.
    settings, skipped, oracle = [], [], []
    micro_model = os.path.join(root, MODELS["deit_tiny"]["yaml"])

    def probe(pf):
        name = "deit_micro-%s-%s-%s" % (target, pf[0], pf[1])
        return (name,) + compile_exe(deitc, micro_model, micro, os.path.join(pkg, "bin", name), target,
                                     arch, cfg["batch"], pf[0], pf[1], run)

    grid = [(p, f) for p in precisions for f in fuses]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        probed = list(pool.map(probe, grid))
    for (p, f), (name, ok, dt, why, cmdline) in zip(grid, probed):
        log("  setting %s/%s: %s (%.1f s)" % (p, f, "compiles" if ok else "REJECTED: " + why, dt))
        if not ok:
            skipped.append({"what": "setting %s/%s" % (p, f), "reason": "deitc compile: " + why,
                            "command": "deitc " + cmdline})
            continue
        settings.append({"precision": p, "fuse": f})
        oracle.append({"exe": "bin/" + name, "target": target, "precision": p, "fuse": f,
                       "compile_s": round(dt, 2), "role": "device"})
    if not settings:
        raise SystemExit("gpu_check: deitc compiled no setting of the micro oracle case; first error: %s"
                         % (skipped[0]["reason"] if skipped else "none tried"))

    # 2. the emu twin of each oracle executable (in a dry-run the device one is already emu).
    def twin(o):
        name = "deit_micro-emuref-%s-%s" % (o["precision"], o["fuse"])
        out = os.path.join(pkg, "bin", name)
        if dry:
            shutil.copy2(os.path.join(pkg, o["exe"]), out)
            return name, True, 0.0, None
        ok, dt, why, _ = compile_exe(deitc, micro_model, micro, out, "emu", None, cfg["batch"],
                                     o["precision"], o["fuse"], run)
        return name, ok, dt, why

    # 3. the benchmark executables.
    models = {}
    if dry:
        for m, spec in DRY_MODELS.items():
            d = dict(micro)
            d.update(spec["defines"])
            models[m] = dict(spec, defines=d, timm=None,
                             torch_spec={"img_size": d["img_size"], "patch_size": d["patch_size"],
                                         "embed_dim": d["embed_dim"], "depth": d["depth"],
                                         "num_heads": d["num_heads"], "num_classes": d["num_classes"]})
    else:
        for m in [m for m in args.models.split(",") if m]:
            if m not in MODELS:
                raise SystemExit("gpu_check: unknown model '%s' (models: %s)" % (m, ", ".join(MODELS)))
            models[m] = dict(MODELS[m], defines={}, torch_spec=None)

    def bench_exe(job):
        m, s = job
        spec = models[m]
        name = "%s-%s-%s" % (m, s["precision"], s["fuse"])
        if spec.get("same_as_oracle"):  # the oracle case's executable, compiled already
            src = [o for o in oracle if o["precision"] == s["precision"] and o["fuse"] == s["fuse"]][0]
            shutil.copy2(os.path.join(pkg, src["exe"]), os.path.join(pkg, "bin", name))
            return name, True, src["compile_s"], None, "(copy of %s)" % src["exe"]
        return (name,) + compile_exe(deitc, os.path.join(root, spec["yaml"]), spec["defines"],
                                     os.path.join(pkg, "bin", name), target, arch, spec["batch"],
                                     s["precision"], s["fuse"], run)

    jobs = [(m, s) for m in models for s in settings]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        twins = list(pool.map(twin, list(oracle)))
        macs = dict(zip(models, pool.map(lambda m: inspect_macs(deitc, os.path.join(root, models[m]["yaml"]),
                                                                 models[m]["defines"], run), list(models))))
        built = list(pool.map(bench_exe, jobs))
    for o, (name, ok, dt, why) in zip(list(oracle), twins):
        if ok:
            oracle.append({"exe": "bin/" + name, "target": "emu", "precision": o["precision"], "fuse": o["fuse"],
                           "compile_s": round(dt, 2), "role": "emu", "copy_of": o["exe"] if dry else None})
        else:
            skipped.append({"what": "emu twin %s/%s" % (o["precision"], o["fuse"]), "reason": "deitc compile: " + why})
        log("  emu twin %s/%s: %s (%.1f s)" % (o["precision"], o["fuse"], "ok" if ok else "FAILED: " + why, dt))
    bench = []
    for (m, s), (name, ok, dt, why, cmdline) in zip(jobs, built):
        spec = models[m]
        log("  %s batch %d: %s (%.1f s)" % (name, spec["batch"], "ok" if ok else "FAILED: " + why, dt))
        if not ok:
            skipped.append({"what": name, "reason": "deitc compile: " + why, "command": "deitc " + cmdline})
            continue
        bench.append({"model": m, "exe": "bin/" + name, "precision": s["precision"], "fuse": s["fuse"],
                      "batch": spec["batch"], "macs_per_image": spec.get("macs") or macs[m],
                      "macs_source": "table (DeiT paper / timm)" if spec.get("macs") else "deitc inspect",
                      "macs_inspect": macs[m], "compile_s": round(dt, 2),
                      "timm": spec["timm"], "torch_spec": spec["torch_spec"],
                      "bench_limit_s": spec["bench_limit_s"], "torch_eager_s": spec["torch_eager_s"],
                      "torch_compile_s": spec["torch_compile_s"], "torch_small": spec["torch_small"],
                      "bench_steps": spec.get("bench_steps", [3, 1]),
                      # the cost model's predicted step time goes here once `deitc compile --stats`
                      # exists; nothing is predicted before then
                      "modeled_step_ms": None})

    # identical executables (a setting the compiler accepts but does not act on yet, such as
    # --fuse none before there is a fusion pass) are run once on the GPU; DIR keeps one copy.
    for group in ([o for o in oracle if o["role"] == "device"], [o for o in oracle if o["role"] == "emu"], bench):
        seen = {}
        for e in group:
            path = os.path.join(pkg, e["exe"])
            with open(path, "rb") as f:
                h = hashlib.sha256(f.read()).hexdigest()
            if h in seen:
                e["same_as"] = seen[h]
                os.remove(path)
                log("  %s is byte-identical to %s: run once" % (e["exe"], seen[h]))
            else:
                seen[h] = e["exe"]

    # 3b. the attention comparison: the fp16 `--fuse all` executable of the matrix and the same
    #     model without qkv-attention (step_attention times both).
    attention = None
    am = ATTN_DRY_MODEL if dry else ATTN_MODEL
    fused = [b for b in bench if b["model"] == am and b["precision"] == ATTN_PRECISION and b["fuse"] == "all"]
    if fused:
        spec, name = models[am], "%s-%s-no-qkv-attention" % (am, ATTN_PRECISION)
        ok, dt, why, cmdline = compile_exe(deitc, os.path.join(root, spec["yaml"]), spec["defines"],
                                           os.path.join(pkg, "bin", name), target, arch, spec["batch"],
                                           ATTN_PRECISION, ATTN_UNFUSED_FUSE, run)
        log("  %s batch %d (attention unfused): %s (%.1f s)" % (name, spec["batch"], "ok" if ok else "FAILED: " + why,
                                                                dt))
        if ok:
            attention = {"model": am, "precision": ATTN_PRECISION, "batch": spec["batch"],
                         "fused": fused[0].get("same_as") or fused[0]["exe"], "unfused": "bin/" + name,
                         "unfused_fuse": ATTN_UNFUSED_FUSE, "bench_limit_s": spec["bench_limit_s"],
                         "compile_s": round(dt, 2)}
        else:
            skipped.append({"what": "attention timing (%s)" % name, "reason": "deitc compile: " + why,
                            "command": "deitc " + cmdline})
    else:
        skipped.append({"what": "attention timing", "reason": "no %s %s --fuse all executable in this package"
                        % (am, ATTN_PRECISION)})

    # 3c. the data path (gpu_check_data.py): the same fp16 --fuse all executable, bench_dataload.
    data = sibling("gpu_check_data").package(pkg, deitc, fused[0] if fused else None, dry, skipped)

    # 4. a cuda executable on this GPU-less machine must start and say so (exit 1), not die in
    #    the loader (exit 127): that is what the dlopen of libcuda buys.
    smoke = None
    if not dry and oracle:
        r = run([os.path.join(pkg, oracle[0]["exe"]), "bench", "--steps", "1", "--warmup", "1"], 60, quiet=True)
        smoke = {"exe": oracle[0]["exe"], "rc": r.rc, "said": (r.err.strip() or r.out.strip())[-300:]}
        log("  smoke: %s bench here -> exit %s: %s" % (oracle[0]["exe"], r.rc, smoke["said"].splitlines()[0][:160]
                                                      if smoke["said"] else ""))
        if r.rc == 127:
            skipped.append({"what": "smoke", "reason": "cuda executable died in the loader here (exit 127)"})

    # 5. the per-op kernel test's GPU package (every emitted kernel against the CPU), when this
    #    build has op_kernel_test: `run` starts with it.
    op_kernels = package_op_kernels(args, deitc, built_here, pkg, arch or args.arch, run)
    log("  per-op kernel test: %s" % (("included (%s)" % op_kernels["source"]) if op_kernels["included"]
                                      else "not included: " + op_kernels["why"]))

    # 6. shared libraries, stripped copies, the oracle data, this script, the manifest.
    exes = sorted(glob.glob(os.path.join(pkg, "bin", "*"))) + \
        ([os.path.join(pkg, OP_KERNEL_CHECK)] if op_kernels["included"] else [])
    copied, missing = copy_libs(exes, os.path.join(pkg, "lib"))
    for lib, src in sorted(copied.items()):
        log("  lib: %s (from %s)" % (lib, src))
    if args.strip and shutil.which("strip"):
        # executables lose their symbol tables too (dlsym and the emu's kernel table use only the
        # dynamic symbols, which stay): an emu executable shrinks from about 2.5 to 1.5 MB.
        for e in exes:
            subprocess.run(["strip", "--strip-all", e], capture_output=True)
        for e in sorted(glob.glob(os.path.join(pkg, "lib", "*"))):
            subprocess.run(["strip", "--strip-debug", e], capture_output=True)
    for f in ("init.safetensors", "batch.safetensors", "expected.safetensors", "after_steps.safetensors",
              "config.json"):
        shutil.copy2(os.path.join(testdata, "deit_micro", f), os.path.join(pkg, "data", "deit_micro", f))
    shutil.copy2(GPU_CHECK, os.path.join(pkg, "gpu_check"))
    os.chmod(os.path.join(pkg, "gpu_check"), 0o755)
    for f in ("torch_baseline.py", "gpu_check_data.py"):
        shutil.copy2(os.path.join(HERE, f), os.path.join(pkg, f))
    problems = check_ldd(pkg) + missing
    manifest = {
        "created": now_iso(), "host": platform.node(), "dry_run": dry, "target": target, "arch": arch,
        "deitc": deitc, "git": git_info(root), "settings": settings, "skipped": skipped,
        "oracle": oracle, "oracle_config": cfg, "oracle_data": "data/deit_micro", "bench": bench,
        "libs": sorted(copied), "ldd_problems": problems, "smoke": smoke, "tolerances": TOLERANCES,
        "compile_jobs": args.jobs, "nvrtc_cache": "DEITC_NO_CACHE" not in COMPILE_ENV, "op_kernels": op_kernels,
        "attention": attention, "data": data,
    }
    rel = os.path.relpath(pkg, root)
    calls = device_calls(manifest, rel if not rel.startswith("..") else pkg)
    manifest["device_calls"] = calls
    with open(os.path.join(pkg, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    plan_text = format_calls(calls)
    with open(os.path.join(pkg, "README.txt"), "w") as f:
        f.write("Made by benchmarks/gpu_check prepare on %s. On the GPU machine (python3 with torch+timm):\n"
                "  python3 gpu_check run . OUTDIR [--torch none|small|all]\n\n%s\n"
                "See manifest.json for what is here and what the compiler rejected.\n" % (manifest["created"], plan_text))
    size = dir_size(pkg)
    log("prepared %s: %d oracle + %d bench executables, %.1f MB" % (pkg, len(oracle), len(bench), size / 1e6))
    log(plan_text)
    for s in skipped:
        log("  skipped %s: %s" % (s["what"], s["reason"]))
    fail = False
    sanitized = any(l.startswith(("libasan", "libubsan")) for l in copied)
    if size > DIR_LIMIT_BYTES and dry and sanitized:  # ASan/UBSan emu builds never ship
        log("  (%.1f MB is over the %d MB limit, but these are sanitizer builds of a dry-run: not applied)"
            % (size / 1e6, DIR_LIMIT_BYTES // 10 ** 6))
    elif size > DIR_LIMIT_BYTES:
        big = sorted(((os.path.getsize(p), p) for p in glob.glob(os.path.join(pkg, "*", "*"))), reverse=True)[:5]
        log("gpu_check: %s is %.1f MB, over the %d MB limit; largest: %s"
            % (pkg, size / 1e6, DIR_LIMIT_BYTES // 10 ** 6,
               ", ".join("%s %.1f MB" % (os.path.relpath(p, pkg), n / 1e6) for n, p in big)))
        fail = True
    if problems:
        fail = True
    if op_kernels.get("source") and not op_kernels["included"]:  # the build has it, packaging failed
        log("gpu_check: " + op_kernels["why"])
        fail = True
    for why in calls_over(calls) if not dry else []:
        log("gpu_check: " + why + ": prepare fewer models or settings (--models, --precisions, --fuse)")
        fail = True
    return 1 if fail else 0


def package_op_kernels(args, deitc, built_here, pkg, arch, run):
    """Runs `op_kernel_test --make-cuda-package PKG/op_kernels --arch ARCH` when this build has
    op_kernel_test (--op-kernel-test, else tests/op_kernel_test beside deitc, built first when
    prepare built deitc); says in the manifest whether the package holds its op_kernel_check."""
    tool = getattr(args, "op_kernel_test", None)
    build_dir = os.path.dirname(deitc)
    if not tool:
        tool = os.path.join(build_dir, "tests", "op_kernel_test")
        if built_here and not getattr(args, "dry_run", False):
            run(["cmake", "--build", build_dir, "-j2", "--target", "op_kernel_test"], 1800, quiet=True)
        if getattr(args, "dry_run", False):
            return {"included": False, "source": None, "why": "a dry-run takes it only from --op-kernel-test"}
    if not os.access(tool, os.X_OK):
        return {"included": False, "source": None, "why": "no op_kernel_test in this build (%s)" % tool}
    out = os.path.join(pkg, os.path.dirname(OP_KERNEL_CHECK))
    argv = [tool, "--make-cuda-package", out, "--arch", arch or "sm_90"]
    r = run(argv, 1800, quiet=True, env=COMPILE_ENV)
    exe = os.path.join(pkg, OP_KERNEL_CHECK)
    if not r.ok() or not os.access(exe, os.X_OK):
        return {"included": False, "source": tool, "command": " ".join(argv),
                "why": "op_kernel_test --make-cuda-package failed: %s" % (r.why() if not r.ok() else
                                                                         "it wrote no %s" % OP_KERNEL_CHECK)}
    return {"included": True, "source": tool, "command": " ".join(argv), "exe": OP_KERNEL_CHECK, "why": None}

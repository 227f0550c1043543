"""gpu_check_data.py: gpu_check's `data` step, the training data path on the GPU machine.
prepare (here): package() puts the tool tests/loader/bench_dataload (when it links with the
system's libraries alone) beside the fp16 `--fuse all` bench executable the package already has.
run (there): step_data() generates ImageNet-like JPEGs, packs them raw (`EXE pack --raw`), times
`EXE bench` against `EXE bench --data raw.dpk --aug light` (the packed + device path: batch,
upload, step on the wall clock) and records bench_dataload's per-path CPU table; data_md() is
results.md's section. Loaded by benchmarks/gpu_check as a sibling module (copied into DIR)."""
import os
import shutil
import subprocess
import sys

gc = sys.modules["gpu_check"]  # benchmarks/gpu_check, loaded first (its sibling() or _core())

TOOL = "tools/bench_dataload"  # in DIR
# the real package is at ~58.5 MB of gpu_check's 60 MB: the dry run checks the tool stays under
TOOL_MAX_BYTES = 1200 * 1000
# GPU machine: ~1000 images, S steps after W warm-up; the dry run: emu executables, small counts
SIZES = {"real": {"images": 1000, "classes": 10, "steps": 10, "warmup": 3},
         "dry": {"images": 40, "classes": 4, "steps": 2, "warmup": 1}}
# limits (seconds) of each part: gen (one thread draws and encodes ~15 ms an image), pack (all
# cores), each bench (gpu_check's start-up allowance + the steps), bench_dataload's table (decodes
# the folder 7 times, packs it twice). The real ones sum to 120 s: the second device call's room.
LIMITS = {"real": {"gen": 20, "pack": 10, "bench": 25, "table": 40},
          "dry": {"gen": 10, "pack": 10, "bench": 30, "table": 20}}


def limit_s(data):
    lim = data["limits"]
    return lim["gen"] + lim["pack"] + 2 * lim["bench"] + lim["table"]


def package(pkg, deitc, bench, dry, skipped):
    """Copies bench_dataload into DIR; the manifest's "data" entry (None and a `skipped` row when
    the step cannot run). bench: the package's fp16 --fuse all bench row, or None."""
    if not bench:
        skipped.append({"what": "data path timing", "reason": "no fp16 --fuse all executable in this package"})
        return None
    src = os.path.join(os.path.dirname(deitc), "tests", "bench_dataload")
    if not os.path.isfile(src):
        skipped.append({"what": "data path timing", "reason": "no bench_dataload in this build (%s)" % src})
        return None
    missing = [so for so, path in gc.ldd_libs(src) if path is None or not gc.SYSTEM_LIBS.match(so)]
    if missing:  # libjpeg/libpng or the like: the GPU machine may lack them
        skipped.append({"what": "data path timing", "reason": "bench_dataload needs libraries beyond glibc's: %s"
                        % ", ".join(missing)})
        return None
    dst = os.path.join(pkg, TOOL)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)
    if shutil.which("strip"):  # all symbols: 0.95 MB against 1.07 MB with --strip-debug
        subprocess.run(["strip", dst], capture_output=True)
    which = "dry" if dry else "real"
    gc.log("  data path: %s --data and %s (%.2f MB)" % (bench["exe"], TOOL, os.path.getsize(dst) / 1e6))
    return dict(SIZES[which], exe=bench.get("same_as") or bench["exe"], batch=bench["batch"], tool=TOOL,
                limits=LIMITS[which])


def _bench(run, argv, limit, env, batch):
    """One `EXE bench` (a --no-graph retry as step_bench does): its row, or {"error"}."""
    res = run(argv, limit, env=env)
    if gc.graph_retry(res):
        res = run(argv + ["--no-graph"], limit, env=env)
    parsed = gc.parse_bench(res.out, batch) if res.ok() else None
    if not parsed or not parsed["images_per_s"]:
        return {"error": res.why() if not res.ok() else "no JSON line with images/s in its output"}
    raw = parsed["raw"]
    return {"images_per_s": parsed["images_per_s"], "step_ms_median": parsed["step_ms_median"],
            "host_syncs_per_step": raw.get("host_syncs_per_step"), "graph": raw.get("graph"),
            "no_graph": "--no-graph" in res.argv, "wall_s": round(res.wall, 2)}


def step_data(run, pkg, data, work, env, rep):
    """gen, pack --raw, bench, bench --data, bench_dataload's table; every failure is recorded."""
    lim, exe, tool = data["limits"], os.path.join(pkg, data["exe"]), os.path.join(pkg, data["tool"])
    d = os.path.join(work, "data")
    imgs, dpk = os.path.join(d, "images"), os.path.join(d, "raw.dpk")
    os.makedirs(d, exist_ok=True)
    row = {"exe": data["exe"], "images": data["images"], "steps": data["steps"], "warmup": data["warmup"]}
    rep.data["data"] = row
    for what, argv, limit in (("gen", [tool, "gen", imgs, data["images"], data["classes"]], lim["gen"]),
                              ("pack", [exe, "pack", imgs, "-o", dpk, "--max-side", "256", "--raw"], lim["pack"])):
        res = run(argv, limit, env=env)
        row[what + "_s"] = round(res.wall, 2)
        if not res.ok():
            row["error"] = "%s: %s" % (what, res.why())
            rep.fail("data %s: %s" % (what, res.why()))
            return
    row["dpk_mb"] = round(os.path.getsize(dpk) / 1e6, 2)
    for which, extra in (("bench", []), ("bench_data", ["--data", dpk, "--aug", "light"])):
        argv = [exe, "bench", "--steps", str(data["steps"]), "--warmup", str(data["warmup"])] + extra
        r = _bench(run, argv, lim["bench"], env, data["batch"])
        row[which] = r
        if r.get("error"):
            rep.fail("data %s: %s" % (which.replace("_", " --"), r["error"]))
    b, bd = row["bench"], row["bench_data"]
    if b.get("step_ms_median") and bd.get("step_ms_median"):
        row["step_ratio"] = round(bd["step_ms_median"] / b["step_ms_median"], 3)
    res = run([tool, "bench", imgs, "224"], lim["table"], env=env)
    row["table"] = [ln for ln in res.out.splitlines() if ln.startswith("|")]
    row["table_s"] = round(res.wall, 2)
    if not res.ok() or not row["table"]:
        row["table_error"] = res.why() if not res.ok() else "no table in its output"
        rep.fail("data bench_dataload: %s" % row["table_error"])
    gc.log("  data: bench %s ms, bench --data %s ms a step (ratio %s), %s host syncs a step with --data" % (
        gc._f(b.get("step_ms_median"), "%.2f"), gc._f(bd.get("step_ms_median"), "%.2f"),
        row.get("step_ratio", "-"), gc._f(bd.get("host_syncs_per_step"), "%.2f")))


def data_md(r, manifest):
    """results.md's section: bench against bench --data, and the CPU paths' table."""
    data = manifest.get("data")
    if not data:
        return []
    L = ["## Data path: `bench` vs `bench --data raw.dpk --aug light` (packed + device path)", ""]
    if not r:
        return L + ["(not run in this call)", ""]
    L.append("%s, %d generated JPEGs packed raw (max side 256%s), %d steps after %d warm-up" % (
        r["exe"], r["images"], ", %.1f MB" % r["dpk_mb"] if r.get("dpk_mb") else "", r["steps"], r["warmup"]))
    L.append("")
    if r.get("error"):
        return L + ["error: " + r["error"], ""]
    L.append("| run | step ms (median) | img/s | host syncs a step | graph |")
    L.append("|---|---|---|---|---|")
    for which, name in (("bench", "bench (synthetic batch)"), ("bench_data", "bench --data (wall clock)")):
        x = r.get(which) or {}
        if x.get("error"):
            L.append("| %s | error: %s | | | |" % (name, x["error"]))
            continue
        L.append("| %s | %s | %s | %s | %s |" % (name, gc._f(x.get("step_ms_median"), "%.3f"),
                                              gc._f(x.get("images_per_s")), gc._f(x.get("host_syncs_per_step"), "%.2f"),
                                              "no (--no-graph retry)" if x.get("no_graph") else x.get("graph")))
    L.append("")
    L.append("bench --data / bench (step time) = %s" % ("%.2fx" % r["step_ratio"] if r.get("step_ratio") else "-"))
    L.append("")
    if r.get("table"):
        L.append("The GPU machine's CPUs, per data path (bench_dataload bench DIR 224):")
        L.append("")
        L += r["table"]
    elif r.get("table_error"):
        L.append("bench_dataload: " + r["table_error"])
    L.append("")
    return L

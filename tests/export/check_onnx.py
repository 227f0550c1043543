"""check_onnx.py: the file `deitc export` writes, read by others (run by ctest with /usr/bin/python3).

  checker  Debian's python3-onnx accepts it (onnx.checker); its nodes, opsets, inputs and outputs
           are the original's; its initializers hold the trained weights, and the ones the weights
           file lacks keep their values; a model with external data comes back with inline values.
  ort      onnxruntime runs it and gives deitc's logits (max abs difference 1e-4).

Both also take onnx/export/dedup's fresh model, whose equal initializers torch's export turned
into Identity nodes: exported, those nodes are gone and their outputs are initializers holding
the trained (untied) values; checker also makes a chain Identity(Identity(initializer)) of it.

Exits 77 (ctest: skipped) when the module it needs is not importable.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

MODE = sys.argv[1] if len(sys.argv) > 1 else ""
try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    if MODE == "ort":
        import onnxruntime
except ImportError as e:
    print(f"SKIPPED: {sys.executable} cannot import {e.name} (python3-onnx; pip install onnxruntime)")
    sys.exit(77)

DATA = os.environ["DEITC_TESTDATA"] + "/deit_micro"
DEDUP = os.environ["DEITC_TESTDATA"] + "/onnx/export/dedup"
BIN = os.environ["DEITC_BIN"]
MODEL = DATA + "/deit_opset17.onnx"
DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    out = {}
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            lo, hi = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + lo:8 + n + hi], DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def write_st(path, tensors):
    header, body = {}, b""
    for k, a in tensors.items():
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [len(body), len(body) + a.nbytes]}
        body += np.ascontiguousarray(a, np.float32).tobytes()
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + body)


def deitc(*args):
    r = subprocess.run([BIN, *args], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"FAILED: deitc {' '.join(args)}: exit {r.returncode}\n{r.stdout}{r.stderr}")


def inits(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


failures = []


def check(ok, what):
    print(("ok      " if ok else "FAILED  ") + what)
    if not ok:
        failures.append(what)


def deitc_logits(d, model, batch, weights=None, partial=False):
    out = d + "/logits.safetensors"
    deitc("run", model, *(["--weights", weights] if weights else []), *(["--partial-init"] if partial else []),
          "--input", batch, "-o", out)
    return read_st(out)["logits"]


def holds(gi, w):
    """every trained tensor of w is an initializer of gi: under its own name, or (a Linear weight
    deitc names as timm does, [out, in]) transposed under the name of the export's MatMul input"""
    spare = [k for k in gi if k not in w]
    for k, v in w.items():
        if k in gi:
            if not np.array_equal(gi[k], v):
                return False
        elif not any(gi[j].ndim == 2 and np.array_equal(gi[j].T, v) for j in spare):
            return False
    return True


def dedup(d):
    """the fresh model: train, export, check (checker) or run (ort)"""
    model, batch = DEDUP + "/deit_opset17.onnx", DEDUP + "/batch.safetensors"
    trained, out = d + "/dedup_trained.safetensors", d + "/dedup.onnx"
    deitc("run", model, "--steps", "3", "--input", batch, "-o", trained)
    deitc("export", model, "--weights", trained, "-o", out)
    w = {k: v for k, v in read_st(trained).items() if k != "losses"}
    if MODE == "ort":
        images = read_st(batch)["images"].astype(np.float32)
        ours = deitc_logits(d, out, batch)
        sess = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        theirs = sess.run(None, {sess.get_inputs()[0].name: images})[0]
        diff = float(np.abs(theirs - ours).max())
        check(diff < 1e-4, f"dedup: onnxruntime logits vs deitc: max abs difference {diff:.2e}")
        return
    onnx.checker.check_model(out, full_check=True)
    check(True, "dedup: onnx.checker.check_model(full_check=True)")
    orig, got = onnx.load(model), onnx.load(out)
    tied = [n for n in orig.graph.node if n.op_type == "Identity" and n.input[0] in inits(orig)]
    check(len(tied) == 15 and all(n.output[0] in w for n in tied), "dedup: the weights file names all 15 Identity outputs")
    check(list(got.graph.node) == [n for n in orig.graph.node if n not in tied], "dedup: same nodes less the Identities")
    check(list(got.opset_import) == list(orig.opset_import) and list(got.graph.input) == list(orig.graph.input)
          and list(got.graph.output) == list(orig.graph.output), "dedup: same opsets, inputs and outputs")
    gi = inits(got)
    check(len(gi) == 32 and sorted(gi) == sorted(set(inits(orig)) | {n.output[0] for n in tied}) and holds(gi, w),
          "dedup: initializers = trained weights (under the file's own names; Linear weights transposed back)")
    check(not np.array_equal(gi["blocks.0.norm1.weight"], gi["blocks.1.norm2.weight"]), "dedup: untied LayerNorms")
    e = deitc_logits(d, out, batch)
    ref = deitc_logits(d, model, batch, trained)
    rel = float(np.linalg.norm(e - ref) / np.linalg.norm(ref))
    check(rel < 1e-6, f"dedup: exported vs trained logits rel L2 {rel:.2e}")
    # initializers also listed as graph inputs (as IR version < 4 requires): new ones are too
    listed = onnx.load(model)
    listed.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                              for t in listed.graph.initializer)
    onnx.save(listed, d + "/listed.onnx")
    deitc("export", d + "/listed.onnx", "--weights", trained, "-o", d + "/listed_out.onnx")
    onnx.checker.check_model(d + "/listed_out.onnx", full_check=True)
    lo = onnx.load(d + "/listed_out.onnx")
    check(sorted(i.name for i in lo.graph.input) == sorted(["images"] + list(inits(lo))) and len(inits(lo)) == 32 and
          holds(inits(lo), w), "dedup: initializers listed as inputs")
    # a chain: blocks.1.norm1.bias = Identity(blocks.0.norm1.bias = Identity(patch_embed.proj.bias))
    nodes = list(orig.graph.node)
    tail = next(n for n in nodes if n.output[0] == "blocks.1.norm1.bias")
    head = next(n for n in nodes if n.output[0] == "blocks.0.norm1.bias")
    nodes.remove(tail)
    nodes.insert(nodes.index(head) + 1, tail)
    tail.input[0] = "blocks.0.norm1.bias"
    del orig.graph.node[:]
    orig.graph.node.extend(nodes)
    chain = d + "/chain.onnx"
    onnx.save(orig, chain)
    write_st(d + "/tail.safetensors", {"blocks.1.norm1.bias": w["blocks.1.norm1.bias"] + 0.25})
    deitc("export", chain, "--weights", d + "/tail.safetensors", "-o", d + "/chain_out.onnx")
    onnx.checker.check_model(d + "/chain_out.onnx", full_check=True)
    ci = inits(onnx.load(d + "/chain_out.onnx"))
    check(len(ci) == 18 and np.array_equal(ci["blocks.1.norm1.bias"], w["blocks.1.norm1.bias"] + 0.25),
          "dedup chain: the tail alone becomes an initializer")
    e = deitc_logits(d, d + "/chain_out.onnx", batch)
    ref = deitc_logits(d, chain, batch, d + "/tail.safetensors", partial=True)
    rel = float(np.linalg.norm(e - ref) / np.linalg.norm(ref))
    check(rel < 1e-6, f"dedup chain: exported vs weights-file logits rel L2 {rel:.2e}")
    deitc("run", chain, "--steps", "3", "--input", batch, "-o", d + "/chain_trained.safetensors")
    deitc("export", chain, "--weights", d + "/chain_trained.safetensors", "-o", d + "/chain_all.onnx")
    onnx.checker.check_model(d + "/chain_all.onnx", full_check=True)
    e = deitc_logits(d, d + "/chain_all.onnx", batch)
    ref = deitc_logits(d, chain, batch, d + "/chain_trained.safetensors")
    rel = float(np.linalg.norm(e - ref) / np.linalg.norm(ref))
    check(rel < 1e-6 and len(inits(onnx.load(d + "/chain_all.onnx"))) == 32,
          f"dedup chain, all trained: exported vs trained logits rel L2 {rel:.2e}")


def main():

    d = tempfile.mkdtemp(prefix="deitc_export_py_")
    trained, out = d + "/trained.safetensors", d + "/out.onnx"
    deitc("run", MODEL, "--steps", "3", "--input", DATA + "/batch.safetensors", "-o", trained)
    deitc("export", MODEL, "--weights", trained, "-o", out)
    w = read_st(trained)
    if MODE == "checker":
        onnx.checker.check_model(out, full_check=True)
        check(True, "onnx.checker.check_model(full_check=True)")
        orig, got = onnx.load(MODEL), onnx.load(out)
        check(list(got.graph.node) == list(orig.graph.node), "same nodes")
        check(list(got.opset_import) == list(orig.opset_import) and got.ir_version == orig.ir_version, "same opsets")
        check(list(got.graph.input) == list(orig.graph.input) and list(got.graph.output) == list(orig.graph.output),
              "same inputs and outputs")
        gi = inits(got)
        check(all(np.array_equal(gi[k], v) for k, v in w.items() if k in gi) and len(gi) == 32,
              "initializers = trained weights")
        # a weights file with one tensor: the rest keep their values
        write_st(d + "/one.safetensors", {"head.bias": w["head.bias"]})
        deitc("export", MODEL, "--weights", d + "/one.safetensors", "-o", d + "/one.onnx")
        gi, oi = inits(onnx.load(d + "/one.onnx")), inits(orig)
        check(np.array_equal(gi["head.bias"], w["head.bias"]) and not np.array_equal(gi["head.bias"], oi["head.bias"])
              and all(np.array_equal(gi[k], oi[k]) for k in oi if k != "head.bias"), "partial weights file")
        # external data in, inline values out
        os.mkdir(d + "/ext")
        onnx.save_model(orig, d + "/ext/model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="weights.bin", size_threshold=0)
        deitc("export", d + "/ext/model.onnx", "--weights", trained, "-o", d + "/inline.onnx")
        inl = onnx.load(d + "/inline.onnx", load_external_data=False)
        check(all(t.data_location != onnx.TensorProto.EXTERNAL and not t.external_data for t in inl.graph.initializer),
              "external data written inline")
        onnx.checker.check_model(d + "/inline.onnx", full_check=True)
        gi = inits(inl)
        check(all(np.array_equal(gi[k], v) for k, v in w.items() if k in gi) and len(gi) == 32,
              "external-data model: initializers = trained weights")
    else:
        images = read_st(DATA + "/batch.safetensors")["images"].astype(np.float32)
        deitc("run", out, "--input", DATA + "/batch.safetensors", "-o", d + "/logits.safetensors")
        ours = read_st(d + "/logits.safetensors")["logits"]
        sess = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        theirs = sess.run(None, {sess.get_inputs()[0].name: images})[0]
        diff = float(np.abs(theirs - ours).max())
        check(diff < 1e-4, f"onnxruntime {onnxruntime.__version__} logits vs deitc: max abs difference {diff:.2e}")
    dedup(d)
    if failures:
        sys.exit(f"{len(failures)} check(s) failed; kept {d}")
    subprocess.run(["rm", "-rf", d])


main()

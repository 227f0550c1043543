"""check_onnx.py: the file `deitc export` writes, read by others (run by ctest with /usr/bin/python3).

  checker  Debian's python3-onnx accepts it (onnx.checker); its nodes, opsets, inputs and outputs
           are the original's; its initializers hold the trained weights, and the ones the weights
           file lacks keep their values; a model with external data comes back with inline values.
  ort      onnxruntime runs it and gives deitc's logits (max abs difference 1e-4).

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


def main():
    failures = []

    def check(ok, what):
        print(("ok      " if ok else "FAILED  ") + what)
        if not ok:
            failures.append(what)

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
    if failures:
        sys.exit(f"{len(failures)} check(s) failed; kept {d}")
    subprocess.run(["rm", "-rf", d])


main()

#!/usr/bin/python3
"""make_cases.py: regenerates the small ONNX cases under tests/data/onnx/ (committed; the
tests themselves need no Python). Run with Debian's python3 (torch 1.13, onnx 1.12):

    /usr/bin/python3 tests/onnx/make_cases.py ../shared/tools/deit_ref.py tests/data/onnx
    /usr/bin/python3 tests/onnx/make_cases.py --export-only ../shared/tools/deit_ref.py tests/data/onnx
    /usr/bin/python3 tests/onnx/make_cases.py --small-only ../shared/tools/deit_ref.py tests/data/onnx
      (the second remakes export/ alone, the third bad/ and ops/)

Each model folder holds batch.safetensors (images, labels), expected.safetensors (logits and
the losses of 3 AdamW steps, lr 1e-3, wd 0.05, float64 PyTorch) and ONNX exports of the same
weights: torch exports at opsets 13..17, and rewrites of them that torch 1.13 cannot export:
opset 18 (ReduceMean axes as an input), opset 20 (Gelu op), weights in typed fields
(float_data instead of raw_data), weights in an external data file. bad/ holds broken models
for the error tests; ops/ small graphs of the other supported ops with numpy's answers.

export/ holds models exported here with ref's DeiT module (its command-line oracle is not
used) the way people export them: do_constant_folding=False (weights transposed in the
graph, shape arithmetic left in), a static batch (no dynamic_axes), F.gelu(approximate='tanh')
spelled out as Mul/Add/Tanh, and a fresh model whose equal initializers torch deduplicates
into Identity nodes; expected.safetensors there is computed by make_export_case in float64."""
import importlib.util, math, os, shutil, subprocess, sys, tempfile
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto


def load_ref(path):
    spec = importlib.util.spec_from_file_location("deit_ref", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def to_opset18(m):
    """ReduceMean (and Squeeze/Unsqueeze already take inputs since 13): axes become an input."""
    g = m.graph
    nodes = []
    for n in g.node:
        if n.op_type == "ReduceMean":
            axes = [a for a in n.attribute if a.name == "axes"][0]
            cname = n.name + "_axes"
            nodes.append(helper.make_node("Constant", [], [cname], name=cname,
                                          value=numpy_helper.from_array(np.array(list(axes.ints), np.int64))))
            n.input.append(cname)
            n.attribute.remove(axes)
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 18
    return m


def to_gelu20(m):
    """x/sqrt2 -> Erf -> +1 -> *x -> *0.5 becomes one Gelu node (opset 20)."""
    g = m.graph
    by_out = {o: n for n in g.node for o in n.output}
    drop, nodes = set(), []
    for n in g.node:
        if n.op_type == "Erf":
            div = by_out[n.input[0]]
            add = [a for a in g.node if n.output[0] in a.input][0]
            mul = [a for a in g.node if add.output[0] in a.input][0]
            mul2 = [a for a in g.node if mul.output[0] in a.input][0]
            x = div.input[0]
            for d in (div, n, add, mul, mul2):
                drop.add(d.name)
            nodes.append((mul2.name, helper.make_node("Gelu", [x], [mul2.output[0]], name=div.name.replace("/Div", "/Gelu"),
                                                      approximate="none")))
    repl = dict(nodes)
    out = []
    for n in g.node:
        if n.name in repl:
            out.append(repl[n.name])
        elif n.name not in drop:
            out.append(n)
    del g.node[:]
    g.node.extend(out)
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 20
    return m


def to_typed(m):
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT and t.raw_data:
            a = numpy_helper.to_array(t)
            t.ClearField("raw_data")
            t.float_data.extend(a.flatten().tolist())
    return m


def make_model(ref, out, args, opsets):
    tmp = tempfile.mkdtemp()
    subprocess.check_call([sys.executable, ref.__file__, "--out", tmp, "--opsets", "13,14,15,16,17"] + args,
                          stdout=subprocess.DEVNULL)
    os.makedirs(out, exist_ok=True)
    e = ref.load_safetensors(os.path.join(tmp, "expected.safetensors"))
    ref.save_safetensors(os.path.join(out, "expected.safetensors"), {"logits": e["logits"], "losses": e["losses"]})
    shutil.copy(os.path.join(tmp, "batch.safetensors"), out)
    for op in opsets:
        if isinstance(op, int) and op <= 17:
            shutil.copy(os.path.join(tmp, f"deit_opset{op}.onnx"), out)
    if 18 in opsets:
        onnx.save(to_opset18(onnx.load(os.path.join(tmp, "deit_opset16.onnx"))), os.path.join(out, "deit_opset18.onnx"))
    if 20 in opsets:
        onnx.save(to_gelu20(onnx.load(os.path.join(tmp, "deit_opset17.onnx"))), os.path.join(out, "deit_opset20_gelu.onnx"))
    if "typed" in opsets:
        onnx.save(to_typed(onnx.load(os.path.join(tmp, "deit_opset15.onnx"))), os.path.join(out, "deit_typed.onnx"))
    if "external" in opsets:
        m = onnx.load(os.path.join(tmp, "deit_opset17.onnx"))
        onnx.save_model(m, os.path.join(out, "deit_external.onnx"), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="deit_external.bin", size_threshold=0)
    shutil.rmtree(tmp)


def tiny_graph(nodes, inits, opset=17, inp=("x", [1, 4])):
    x = helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, inp[1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph(nodes, "bad", [x], [y], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def make_bad(out):
    os.makedirs(out, exist_ok=True)
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    # an operator deitc does not import
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                          helper.make_node("Tanh", ["h"], ["y"], name="the_tanh")], [w]),
              os.path.join(out, "unsupported_op.onnx"))
    # an initializer whose raw data is shorter than its shape says
    short = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    short.raw_data = short.raw_data[:40]
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [short]),
              os.path.join(out, "bad_length.onnx"))
    # the same in a typed field
    typed = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [1.0] * 16)
    del typed.float_data[15]
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [typed]),
              os.path.join(out, "bad_typed_length.onnx"))
    # external data that is not there
    ext = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [1.0] * 16)
    ext.ClearField("float_data")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "missing_weights.bin"), ("offset", "0"), ("length", "64")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [ext]),
              os.path.join(out, "missing_external.onnx"))
    # a node reading a value nobody defines
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "nowhere"], ["y"], name="mm")], [w]),
              os.path.join(out, "undefined_input.onnx"))
    # an operator deitc does not import at all
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                          helper.make_node("Sin", ["h"], ["y"], name="the_sin")], [w], opset=15),
              os.path.join(out, "unsupported_sin.onnx"))
    # Softmax over a non-last axis (opset 13 axis=1, and opset 11's default axis 1)
    x3 = ("x", [1, 3, 4])
    onnx.save(tiny_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm_axis1", axis=1)], [], opset=13, inp=x3),
              os.path.join(out, "softmax_axis1.onnx"))
    onnx.save(tiny_graph([helper.make_node("Softmax", ["x"], ["y"], name="sm_old")], [], opset=11, inp=x3),
              os.path.join(out, "softmax_opset11.onnx"))
    # the inner form of the tanh GELU, but its Tanh is the output: no GELU to recover
    k = lambda name, v: numpy_helper.from_array(np.array(v, np.float32), name)
    onnx.save(tiny_graph([helper.make_node("Mul", ["x", "x"], ["sq"], name="sq"),
                          helper.make_node("Mul", ["x", "sq"], ["cube"], name="cube"),
                          helper.make_node("Mul", ["c1", "cube"], ["m"], name="m"),
                          helper.make_node("Add", ["x", "m"], ["a"], name="a"),
                          helper.make_node("Mul", ["c2", "a"], ["u"], name="u"),
                          helper.make_node("Tanh", ["u"], ["y"], name="lonely_tanh")],
                         [k("c1", 0.044715), k("c2", math.sqrt(2 / math.pi))]),
              os.path.join(out, "tanh_outside_gelu.onnx"))
    # a well-formed tiny model (MatMul + Add + Softmax) for the loader's happy path
    b = numpy_helper.from_array(np.arange(4, dtype=np.float32), "b")
    wv = numpy_helper.from_array((np.arange(16, dtype=np.float32).reshape(4, 4) - 8) / 8, "w")
    onnx.save(tiny_graph([helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
                          helper.make_node("Add", ["h", "b"], ["a"], name="add"),
                          helper.make_node("Softmax", ["a"], ["y"], name="sm", axis=-1)], [wv, b]),
              os.path.join(out, "tiny_ok.onnx"))


def gelu(x, tanh=False):
    import math
    if tanh:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def make_ops(ref, out):
    """Small graphs over the ops DeiT exports do not use, with numpy's answers: each NAME.onnx
    beside NAME.safetensors holding images (the input, batch 2) and logits (the output)."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    c = lambda name, a: numpy_helper.from_array(np.asarray(a), name)
    i64 = lambda *v: np.array(v, np.int64)
    cases = {}
    # Slice, Split, Concat, Neg, Sub scalar, Flatten, Gemm (transB, alpha, beta)
    w = rng.standard_normal((3, 16)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    nodes = [helper.make_node("Slice", ["x", "s0", "s1", "s2"], ["sl"], name="slice"),
             helper.make_node("Split", ["sl", "sp"], ["a", "b"], name="split", axis=1),
             helper.make_node("Concat", ["b", "a"], ["cc"], name="concat", axis=1),
             helper.make_node("Neg", ["cc"], ["ng"], name="neg"),
             helper.make_node("Sub", ["ng", "half"], ["sb"], name="sub"),
             helper.make_node("Flatten", ["sb"], ["fl"], name="flatten", axis=1),
             helper.make_node("Gemm", ["fl", "w", "bias"], ["y"], name="gemm", transB=1, alpha=0.5, beta=2.0)]
    inits = [c("s0", i64(1)), c("s1", i64(5)), c("s2", i64(2)), c("sp", i64(1, 3)), c("half", np.float32(0.5)),
             c("w", w), c("bias", bias)]
    sl = x[:, :, 1:5]
    cc = np.concatenate([sl[:, 1:], sl[:, :1]], 1)
    cases["slice_split_gemm"] = (nodes, inits, 13, 0.5 * (-cc - 0.5).reshape(2, 16) @ w.T + 2 * bias)
    # ReduceMean keepdims=0, Unsqueeze, Mul, Transpose, Gather of several indices, Reshape 0/-1, Softmax
    nodes = [helper.make_node("ReduceMean", ["x"], ["rm"], name="mean", axes=[1], keepdims=0),
             helper.make_node("Unsqueeze", ["rm", "ax1"], ["us"], name="unsq"),
             helper.make_node("Mul", ["x", "us"], ["m"], name="mul"),
             helper.make_node("Transpose", ["m"], ["t"], name="tr", perm=[0, 2, 1]),
             helper.make_node("Gather", ["t", "idx"], ["g"], name="gather", axis=2),
             helper.make_node("Reshape", ["g", "shp"], ["r"], name="reshape"),
             helper.make_node("Softmax", ["r"], ["y"], name="softmax", axis=-1)]
    inits = [c("ax1", i64(1)), c("idx", i64(3, 0, 1)), c("shp", i64(0, -1))]
    m = x * x.mean(1, keepdims=True)
    r = m.transpose(0, 2, 1)[:, :, [3, 0, 1]].reshape(2, -1)
    e = np.exp(r - r.max(-1, keepdims=True))
    cases["reduce_gather_softmax"] = (nodes, inits, 13, e / e.sum(-1, keepdims=True))
    # LayerNormalization without bias, Gelu tanh (opset 20), MatMul, Identity, Dropout, Cast, Squeeze
    scale = (1 + 0.1 * rng.standard_normal(6)).astype(np.float32)
    w2 = rng.standard_normal((6, 5)).astype(np.float32)
    nodes = [helper.make_node("LayerNormalization", ["x", "scale"], ["ln"], name="ln", axis=-1, epsilon=1e-5),
             helper.make_node("Gelu", ["ln"], ["ge"], name="gelu", approximate="tanh"),
             helper.make_node("MatMul", ["ge", "w2"], ["mm"], name="mm"),
             helper.make_node("Identity", ["mm"], ["id"], name="id"),
             helper.make_node("Dropout", ["id"], ["dr"], name="drop"),
             helper.make_node("Cast", ["dr"], ["ca"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Slice", ["ca", "z", "one", "ax1"], ["s"], name="take_token"),
             helper.make_node("Squeeze", ["s", "ax1"], ["y"], name="squeeze")]
    inits = [c("scale", scale), c("w2", w2), c("z", i64(0)), c("one", i64(1)), c("ax1", i64(1))]
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ln = (x - mu) / np.sqrt(var + 1e-5) * scale
    cases["ln_gelu_tanh"] = (nodes, inits, 20, (gelu(ln.astype(np.float64), tanh=True) @ w2)[:, 0])
    # gelu_new's spelling 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * pow(x, 3)))), then
    # attention as torch 2 exports scaled_dot_product_attention: q * sqrt(s) @ (k^T * sqrt(s))
    sq = np.float32((6 ** -0.5) ** 0.5)
    nodes = [helper.make_node("Pow", ["x", "three"], ["p3"], name="pow"),
             helper.make_node("Mul", ["p3", "c044"], ["m"], name="m044"),
             helper.make_node("Add", ["x", "m"], ["a"], name="inner"),
             helper.make_node("Mul", ["a", "c079"], ["u"], name="m079"),
             helper.make_node("Tanh", ["u"], ["t"], name="tanh"),
             helper.make_node("Add", ["t", "one"], ["o"], name="plus1"),
             helper.make_node("Mul", ["x", "half"], ["h"], name="half_x"),
             helper.make_node("Mul", ["h", "o"], ["g"], name="gelu_new"),
             helper.make_node("Transpose", ["g"], ["kt"], name="kt", perm=[0, 2, 1]),
             helper.make_node("Mul", ["g", "sq"], ["qs"], name="q_scaled"),
             helper.make_node("Mul", ["kt", "sq"], ["ks"], name="k_scaled"),
             helper.make_node("MatMul", ["qs", "ks"], ["sc"], name="scores"),
             helper.make_node("Softmax", ["sc"], ["p"], name="softmax", axis=-1),
             helper.make_node("MatMul", ["p", "g"], ["y"], name="pv")]
    inits = [c("three", np.float32(3)), c("c044", np.float32(0.044715)), c("c079", np.float32(math.sqrt(2 / math.pi))),
             c("one", np.float32(1)), c("half", np.float32(0.5)), c("sq", sq)]
    gx = gelu(x.astype(np.float64), tanh=True)
    sc = gx @ gx.transpose(0, 2, 1) * 6 ** -0.5
    e = np.exp(sc - sc.max(-1, keepdims=True))
    cases["gelu_new_sdpa"] = (nodes, inits, 14, (e / e.sum(-1, keepdims=True)) @ gx)
    for name, (nodes, inits, opset, y) in cases.items():
        xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6])
        yo = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        g = helper.make_graph(nodes, name, [xi], [yo], initializer=inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), os.path.join(out, name + ".onnx"))
        ref.save_safetensors(os.path.join(out, name + ".safetensors"),
                             {"images": x, "logits": np.asarray(y, np.float32)})


def oracle_f64(ref, init, make, x, y, steps, lr, wd):
    """logits and the losses of `steps` AdamW steps (timm weight decay groups), float64."""
    import torch
    import torch.nn.functional as F
    m64 = make().double()
    m64.load_state_dict({k: v.double() for k, v in init.items()})
    logits = m64(x.double()).detach().float()
    decay = [p for k, p in m64.named_parameters() if p.ndim > 1 and k not in ("pos_embed", "cls_token")]
    rest = [p for k, p in m64.named_parameters() if not (p.ndim > 1 and k not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(m64(x.double()), y)
        losses.append(float(loss))
        loss.backward()
        opt.step()
    return logits, torch.tensor(losses, dtype=torch.float32)


def make_export_case(ref, out, cfg, exports, gelu_tanh=False, seed=3, fresh=False):
    """A DeiT of cfg (img, patch, dim, depth, heads, mlp_ratio, classes, batch) with ref's
    randomized weights, exported as each (file, opset, do_constant_folding, dynamic batch) of
    exports ("18:FILE" entries rewrite the opset-16 export, see to_opset18), beside
    batch.safetensors and expected.safetensors (logits; losses of 3 AdamW steps, lr 1e-3,
    wd 0.05, float64 PyTorch). gelu_tanh: the MLPs use F.gelu(approximate='tanh'). fresh: as
    a model about to be trained (timm's init: LayerNorms 1 and 0, biases 0), whose equal
    initializers torch's export deduplicates into Identity nodes of one of them."""
    import torch
    import torch.nn.functional as F

    class MlpTanh(ref.Mlp):
        def forward(s, x):
            return s.fc2(F.gelu(s.fc1(x), approximate="tanh"))

    def make():
        m = ref.DeiT(cfg["img"], cfg["patch"], 3, cfg["classes"], cfg["dim"], cfg["depth"], cfg["heads"], cfg["mlp_ratio"])
        if gelu_tanh:
            for b in m.blocks:
                b.mlp.__class__ = MlpTanh
        return m

    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    m = make()
    ref.randomize(m, g)
    if fresh:
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "norm" in name:
                    p.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    p.zero_()
    init = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(cfg["batch"], 3, cfg["img"], cfg["img"], generator=g)
    y = torch.randint(0, cfg["classes"], (cfg["batch"],), generator=g)
    logits, losses = oracle_f64(ref, init, make, x, y, 3, 1e-3, 0.05)
    ref.save_safetensors(os.path.join(out, "batch.safetensors"), {"images": x, "labels": y})
    ref.save_safetensors(os.path.join(out, "expected.safetensors"), {"logits": logits, "losses": losses})
    m.eval()
    tmp = tempfile.mkdtemp()
    for name, opset, fold, dynamic in exports:
        path = os.path.join(out, name)
        if opset == 18:  # torch 1.13 stops at 17: rewrite its opset-16 export
            torch.onnx.export(m, x, os.path.join(tmp, "o16.onnx"), opset_version=16, do_constant_folding=fold,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
            onnx.save(to_opset18(onnx.load(os.path.join(tmp, "o16.onnx"))), path)
        else:
            torch.onnx.export(m, x if not dynamic else x[:1], path, opset_version=opset, do_constant_folding=fold,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None)
        assert os.path.getsize(path) < 300_000, f"{path}: {os.path.getsize(path)} bytes"
    shutil.rmtree(tmp)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--small-only":  # bad/ and ops/ alone
        make_bad(os.path.join(sys.argv[3], "bad"))
        make_ops(load_ref(sys.argv[2]), os.path.join(sys.argv[3], "ops"))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--export-only":
        make_exports(load_ref(sys.argv[2]), sys.argv[3])
        return
    ref = load_ref(sys.argv[1])
    out = sys.argv[2]
    common = ["--steps", "3", "--lr", "1e-3", "--wd", "0.05"]
    make_model(ref, os.path.join(out, "small"),
               ["--img", "32", "--patch", "8", "--dim", "32", "--depth", "1", "--heads", "2",
                "--mlp-ratio", "2", "--classes", "5", "--batch", "2", "--seed", "1"] + common,
               [14, 15, 16, 18, 20, "typed", "external"])
    make_model(ref, os.path.join(out, "wide"),
               ["--img", "48", "--patch", "16", "--dim", "48", "--depth", "2", "--heads", "3",
                "--mlp-ratio", "4", "--classes", "7", "--batch", "3", "--seed", "2"] + common,
               [13, 17])
    make_bad(os.path.join(out, "bad"))
    make_ops(ref, os.path.join(out, "ops"))
    make_exports(ref, out)


def make_exports(ref, out):
    """export/: do_constant_folding=False, static batch, tanh GELU (see the module's doc)."""
    # head dim 12, 2 blocks; erf GELU
    make_export_case(ref, os.path.join(out, "export", "nofold"),
                     dict(img=24, patch=8, dim=24, depth=2, heads=2, mlp_ratio=2.0, classes=4, batch=2),
                     [("deit_opset13_nofold.onnx", 13, False, True), ("deit_opset17_nofold.onnx", 17, False, True),
                      ("deit_opset15_static.onnx", 15, True, False),
                      ("deit_opset16_static_nofold.onnx", 16, False, False)], seed=3)
    # head dim 4, 2 blocks, tanh GELU
    make_export_case(ref, os.path.join(out, "export", "gelu_tanh"),
                     dict(img=16, patch=4, dim=16, depth=2, heads=4, mlp_ratio=4.0, classes=3, batch=3),
                     [("deit_opset13_static_nofold.onnx", 13, False, False), ("deit_opset14.onnx", 14, True, True),
                      ("deit_opset17_nofold.onnx", 17, False, True), ("deit_opset18_nofold.onnx", 18, False, True)],
                     gelu_tanh=True, seed=4)
    # a fresh model: equal LayerNorm parameters and zero biases exported as Identity nodes
    make_export_case(ref, os.path.join(out, "export", "dedup"),
                     dict(img=16, patch=8, dim=16, depth=2, heads=2, mlp_ratio=2.0, classes=3, batch=2),
                     [("deit_opset17.onnx", 17, True, True), ("deit_opset13_nofold.onnx", 13, False, True)],
                     seed=5, fresh=True)


if __name__ == "__main__":
    main()

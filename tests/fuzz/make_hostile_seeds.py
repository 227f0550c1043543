#!/usr/bin/env python3
"""make_hostile_seeds.py OUT: the hostile inputs of issue 15 for scripts/fuzz.sh --long.

Writes OUT/<target>/corpus/ (small files: seeds the fuzzer mutates) and OUT/<target>/regress/
(the full-size inputs of the defects, run once each: too big to mutate usefully) for the
targets yaml, onnx and safetensors. Standard library only (protobuf is encoded by hand).
"""
import math
import os
import struct
import sys


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---- YAML ----------------------------------------------------------------------------------

MICRO = ("params: {img_size: 32, patch_size: 8, num_classes: 10, embed_dim: 64, depth: 1, num_heads: 2}\n"
         "layers:\n  - {op: patch_embed, name: patch_embed}\n  - {op: cls_token}\n  - {op: pos_embed}\n"
         "%s  - {op: layer_norm, name: norm}\n  - {op: select_token}\n  - {op: linear, name: head, out: num_classes}\n")


def yaml_seeds(out):
    c, r = os.path.join(out, "yaml", "corpus"), os.path.join(out, "yaml", "regress")
    write(f"{r}/nest_flow_200k.yaml", "[" * 100000 + "]" * 100000)          # minutes in libyaml before
    write(f"{r}/nest_flowmap.yaml", "{a: " * 20000 + "1" + "}" * 20000)
    write(f"{r}/nest_dash.yaml", "layers:\n  " + "- " * 50000 + "x\n")
    write(f"{c}/nest_flow_200.yaml", "[" * 200 + "]" * 200)
    write(f"{c}/nest_flow_128.yaml", "params: " + "[" * 127 + "]" * 127)
    write(f"{c}/nest_indent.yaml", "".join(" " * i + f"k{i}:\n" for i in range(140)))
    write(f"{c}/nest_mixed.yaml", "".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "[" * 40 + "]" * 40)
    write(f"{c}/text_brackets.yaml", "description: |\n  " + "[{" * 100 + "\n  it's [\n# " + "[" * 100 + "\n"
          + "name: \"" + "[" * 100 + "\"\n" + MICRO % "")
    deep = "".join(" " * (2 + 4 * i) + "- op: residual\n" + " " * (4 + 4 * i) + "layers:\n" for i in range(31))
    write(f"{c}/deep_model.yaml", MICRO % (deep + " " * (2 + 4 * 31) + "- {op: layer_norm, name: deep}\n"))


# ---- ONNX (protobuf by hand) ---------------------------------------------------------------

def varint(v):
    b = bytearray()
    while True:
        b.append((v & 127) | (128 if v >= 128 else 0))
        v >>= 7
        if not v:
            return bytes(b)


def field(num, payload):  # length-delimited
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def vfield(num, v):
    return varint(num << 3) + varint(v)


def tensor(name, dims, raw=None, external=None):
    t = b"".join(vfield(1, d) for d in dims) + vfield(2, 1) + field(8, name)  # dims, FLOAT, name
    if raw is not None:
        t += field(9, raw)
    if external:
        t += b"".join(field(13, field(1, k) + field(2, v)) for k, v in external) + vfield(14, 1)
    return t


def model(initializers, nodes=None):
    dim = lambda v: field(1, vfield(1, v))
    xtype = field(2, field(1, vfield(1, 1) + field(2, dim(1) + dim(4))))  # TypeProto.tensor_type
    graph = (b"".join(nodes or [field(1, field(1, "x") + field(1, initializers[0][0]) + field(2, "y")
                                      + field(3, "mm") + field(4, "MatMul"))])
             + field(2, "g") + b"".join(field(5, tensor(*i)) for i in initializers)
             + field(11, field(1, "x") + xtype) + field(12, field(1, "y")))
    return vfield(1, 8) + field(7, graph) + field(8, field(1, "") + vfield(2, 17))


def empty_initializers(n):
    return field(7, b"\x2a\x00" * n)


def onnx_seeds(out):
    c, r = os.path.join(out, "onnx", "corpus"), os.path.join(out, "onnx", "regress")
    w = struct.pack("<16f", *[1.0 if i % 5 == 0 else 0.0 for i in range(16)])
    write(f"{r}/empty_initializers_5m.onnx", empty_initializers(5_000_000))  # 1.3 GB unpacked before
    write(f"{r}/empty_initializers_1m.onnx", empty_initializers(1_000_000))
    write(f"{c}/empty_initializers_2k.onnx", empty_initializers(2000))
    write(f"{c}/ok.onnx", model([("w", [4, 4], w)]))
    ext = [("location", "w.bin"), ("offset", "0")]
    write(f"{c}/external_2pow33.onnx", model([("w", [4, 1 << 31], None, ext)]))  # aborted before
    write(f"{c}/external_overlap.onnx", model([("w", [4, 4], None, ext), ("w2", [4, 4], None, ext)]))
    write(f"{c}/external_link.onnx", model([("w", [4, 4], None, [("location", "passwd.bin")])]))
    nan = bytearray(w)
    nan[20:24] = struct.pack("<f", math.nan)
    write(f"{c}/nan_weight.onnx", model([("w", [4, 4], bytes(nan))]))
    inf = bytearray(w)
    inf[60:64] = struct.pack("<f", -math.inf)
    write(f"{c}/inf_weight.onnx", model([("w", [4, 4], bytes(inf))]))
    write(f"{c}/scalar_inf.onnx", model([("w", [4, 4], w), ("c", [], struct.pack("<f", -math.inf))]))
    # graphs nested in attributes, 100 deep (the limit is 64)
    g = b""
    for _ in range(100):
        g = field(1, field(5, field(1, "a") + field(6, g)))  # Graph.node{attribute{name, g}}
    write(f"{c}/nested_graphs.onnx", vfield(1, 8) + field(7, g))


# ---- safetensors ---------------------------------------------------------------------------

def safetensors(names):
    h = "{" + ",".join(f'"{n}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}' for n in names) + "}"
    return struct.pack("<Q", len(h)) + h.encode()


def safetensors_seeds(out):
    c, r = os.path.join(out, "safetensors", "corpus"), os.path.join(out, "safetensors", "regress")
    write(f"{r}/tensors_200k.safetensors", safetensors(f"t{i}" for i in range(200_000)))  # minutes before
    write(f"{c}/tensors_2k.safetensors", safetensors(f"t{i}" for i in range(2000)))
    write(f"{c}/duplicate.safetensors", safetensors(["a", "b", "a"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_hostile_seeds.py OUT")
    yaml_seeds(sys.argv[1])
    onnx_seeds(sys.argv[1])
    safetensors_seeds(sys.argv[1])

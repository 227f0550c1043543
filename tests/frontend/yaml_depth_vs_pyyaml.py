#!/usr/bin/env python3
"""yaml_depth_vs_pyyaml.py SCANNER [N]: the nesting pre-scan (frontend/yaml_depth.c, through
`test_yaml_limits scan`) against the depth libyaml itself gives (PyYAML's CSafeLoader) on N
documents PyYAML emits from random nested data: flow, block and mixed styles, indents 2-4,
strings full of brackets, quotes and comment signs, depths around the limit (128). A document
deeper than 128 must be refused, one of at most 128 let through. Exit 77 without PyYAML."""
import os
import random
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("PyYAML is not installed: skipped")
    sys.exit(77)

LIMIT = 128
TEXTS = ["a", "[x", "]]", "{[", "it's", "'q'", '"d"', "# no", "a: b", "- c", "x#y", "|", ">", "&a", "*b", "!t",
         "1", "", " sp ", "\\", "\n[[\n", "é["]


def nested(rng, d, target):
    if d >= target:
        return rng.choice(TEXTS)
    n = rng.randint(1, 3)
    i = rng.randrange(n)
    if rng.random() < 0.5:
        return [nested(rng, d + 1, target) if j == i else rng.choice(TEXTS) for j in range(n)]
    return {f"k{j}{rng.choice(TEXTS)[:2]}": (nested(rng, d + 1, target) if j == i else rng.choice(TEXTS))
            for j in range(n)}


def depth(node, d=0):
    if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
        kids = node.value if isinstance(node, yaml.SequenceNode) else [x for kv in node.value for x in kv]
        return max([depth(k, d + 1) for k in kids] + [d + 1])
    return d


def main():
    scanner, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rng = random.Random(15)
    sys.setrecursionlimit(10000)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with tempfile.TemporaryDirectory() as tmp:
        files, depths = [], []
        for k in range(n):
            target = rng.choice([rng.randint(1, 40), rng.randint(LIMIT - 8, LIMIT + 8)])
            text = yaml.dump(nested(rng, 0, target), default_flow_style=rng.choice([None, True, False]),
                             width=rng.choice([40, 80, 10 ** 6]), allow_unicode=True, indent=rng.choice([2, 3, 4]))
            path = os.path.join(tmp, f"d{k}.yaml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            files.append(path)
            depths.append(depth(yaml.compose(text, Loader=loader)))
        out = subprocess.run([scanner, "scan"] + files, capture_output=True, text=True, check=True).stdout.split()
        wrong = [(p, d, r) for p, d, r in zip(files, depths, out) if (r == "1") != (d > LIMIT)]
        for p, d, r in wrong[:5]:
            print(f"depth {d}: {'refused' if r == '1' else 'let through'}:\n{open(p, encoding='utf-8').read()[:400]}")
        print(f"{len(files)} documents, {sum(d > LIMIT for d in depths)} deeper than {LIMIT}: {len(wrong)} wrong")
        sys.exit(1 if wrong or len(out) != len(files) else 0)


main()

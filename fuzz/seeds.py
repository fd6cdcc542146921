#!/usr/bin/env python3
"""Rebuilds fuzz/seeds/<target>/ from inputs already in the repository (and ../shared).

Run by `scripts/fuzz.sh seeds`; the output is committed, so fuzzing never needs this script
or PyYAML. Files are named after where they came from; identical contents are kept once.
"""

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:
    sys.exit("fuzz/seeds.py needs PyYAML (pip install pyyaml)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "reference", "coder-k8s")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
# Larger seeds slow every libFuzzer iteration; the repository's manifests are all below this.
MAX_SEED_BYTES = 16 * 1024


class Target:
    def __init__(self, name):
        self.name = name
        self.dir = os.path.join(SEEDS, name)
        self.seen = set()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)

    def add(self, name, data):
        if isinstance(data, str):
            data = data.encode()
        digest = hashlib.sha256(data).digest()
        if len(data) > MAX_SEED_BYTES or digest in self.seen:
            return
        self.seen.add(digest)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        with open(os.path.join(self.dir, name), "wb") as f:
            f.write(data)


def rel(path):
    return os.path.relpath(path, os.path.dirname(ROOT)) if path.startswith(SHARED) else os.path.relpath(path, ROOT)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def manifests():
    """YAML manifests: examples, test fixtures, the chart's CRDs and the reference samples."""
    paths = sorted(
        glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True)
        + glob.glob(os.path.join(ROOT, "tests", "fixtures", "**", "*.yaml"), recursive=True)
        + glob.glob(os.path.join(ROOT, "charts", "coder-guard", "crds", "*.yaml"))
        + glob.glob(os.path.join(SHARED, "samples", "*.yaml"))
    )
    return paths


def review(uid, operation, obj, old=None):
    api_version = obj.get("apiVersion", "")
    group, _, version = api_version.rpartition("/")
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    request = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", "coder"),
        "operation": operation,
        "userInfo": {"username": "seed"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(body, indent=1, sort_keys=True) + "\n"


def identity(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))


def admission_review():
    t = Target("admission_review")
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "golden", "admission", "*.json"))):
        golden = json.loads(read(path))
        t.add("golden-" + os.path.basename(path), json.dumps(golden["request"], indent=1) + "\n")
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "admission", "*.json"))):
        t.add("example-" + os.path.basename(path), read(path))
    # Every object of the manifests as a CREATE; an object of examples/bad that also exists in
    # examples/good as an UPDATE from the good one.
    objects = []
    for path in manifests():
        for n, obj in enumerate(yaml.safe_load_all(read(path))):
            if isinstance(obj, dict) and obj.get("kind") not in (None, "Secret", "CustomResourceDefinition"):
                objects.append((f"{rel(path)}-{n}.json", path, obj))
    good = {identity(obj): obj for _, path, obj in objects if "/good/" in path}
    for name, path, obj in objects:
        t.add("create-" + name, review(f"seed-{len(t.seen)}", "CREATE", obj))
        if "/bad/" in path and identity(obj) in good:
            t.add("update-" + name, review(f"seed-{len(t.seen)}", "UPDATE", obj, good[identity(obj)]))


def check_yaml():
    t = Target("check_yaml")
    for path in manifests():
        t.add(rel(path), read(path))


def rule_config():
    t = Target("rule_config")
    # The examples in the README, the chart's values and the tests.
    readme = read(os.path.join(ROOT, "README.md")).decode()
    block = re.search(r"```yaml\n(exemptNamespaces:.*?)```", readme, re.S)
    t.add("readme.yaml", block.group(1))
    values = read(os.path.join(ROOT, "charts", "coder-guard", "values.yaml")).decode()
    example = re.search(r"Example:\n((?:#   .*\n)+)", values)
    t.add("chart-values.yaml", "".join(line[4:] + "\n" for line in example.group(1).splitlines()))
    strings = re.compile(r'"((?:exemptNamespaces|rules):\\n[^"]*)"')
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "*.rs")) + glob.glob(os.path.join(ROOT, "src", "**", "*.rs"), recursive=True)):
        for n, m in enumerate(strings.finditer(read(path).decode())):
            t.add(f"{rel(path)}-{n}.yaml", m.group(1).encode().decode("unicode_escape"))
    # Every rule in every form, from the binary's own list.
    listing = subprocess.run(
        ["cargo", "run", "--quiet", "--locked", "--", "rules"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    ids = [line.split()[0] for line in listing.splitlines() if re.match(r"^[a-z][a-z0-9-]+\s", line)]
    forms = ["enforce", "warn", "off", "{mode: warn, exemptNamespaces: [staging]}"]
    lines = [f"  {rule}: {forms[i % len(forms)]}" for i, rule in enumerate(ids)]
    t.add("every-rule.yaml", "exemptNamespaces: [sandbox]\nrules:\n" + "\n".join(lines) + "\n")


def main():
    admission_review()
    check_yaml()
    rule_config()
    for name in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, name))
        size = sum(os.path.getsize(os.path.join(SEEDS, name, f)) for f in files)
        print(f"fuzz/seeds/{name}: {len(files)} files, {size} bytes")


if __name__ == "__main__":
    main()

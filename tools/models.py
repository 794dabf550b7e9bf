#!/usr/bin/env python3
"""The world's shipped models: their manifest, its check, and the comparison
of a retraining with it.

  tools/models.py check DIR
      Checks every file DIR/MANIFEST.json lists (present, size, sha256) and
      writes DIR/quality.json from the manifest's quality figures (only when
      it differs: a second check changes nothing).  `make models` runs this.
  tools/models.py manifest DIR --command CMD --train-s S [--scale X]
      Writes DIR/MANIFEST.json for the models sf-train wrote into DIR: every
      shipped file with sha256 and size, each model's settings line (from its
      .stamp), the quality figures (DIR/quality.json), the command, its time.
  tools/models.py compare SHIPPED TRAINED
      Compares a retraining (TRAINED, with its MANIFEST.json) with the shipped
      manifest: per file bit-exact or, for weights, the largest difference of
      any tensor; per quality figure the difference.  Exit 0 when every file
      is bit-exact, 3 when some differ (the tolerance is printed), 1 on error.

Only the standard library.
"""
import argparse
import datetime
import hashlib
import json
import os
import struct
import sys

# What a models folder ships (paths relative to it), as sf-train writes them.
SHIPPED = [
    "clip-world/model.safetensors",
    "clip-world/vocab.json",
    "clip-world/merges.txt",
    "convnext-world.safetensors",
    "vit-world.safetensors",
    "policy-sft.safetensors",
    "clip-world/filter.json",
    "instruct-world/config.json",
    "instruct-world/model.safetensors",
    "instruct-world/tokenizer.model",
]
MODELS = ["clip", "convnext", "vit", "sft", "instruct", "filter"]
RESTORE = ("restore the shipped files with `git checkout -- models/` (a clone with git-lfs or a partial "
           "checkout may lack them), or retrain them with `make models-train` (see docs/models.md)")


def die(msg):
    print("models: " + msg, file=sys.stderr)
    sys.exit(1)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(d):
    p = os.path.join(d, "MANIFEST.json")
    try:
        with open(p) as f:
            m = json.load(f)
    except FileNotFoundError:
        die("%s is missing: %s" % (p, RESTORE))
    except (OSError, ValueError) as e:
        die("%s is not a readable manifest (%s): %s" % (p, e, RESTORE))
    if not isinstance(m, dict) or not isinstance(m.get("files"), list) or not isinstance(m.get("quality"), dict):
        die("%s has no \"files\" list or \"quality\" object: %s" % (p, RESTORE))
    return m


def cmd_check(a):
    m = load_manifest(a.dir)
    bad = []
    for e in m["files"]:
        p = os.path.join(a.dir, e["path"])
        if not os.path.isfile(p):
            bad.append("%s is missing" % p)
        elif os.path.getsize(p) != e["bytes"]:
            bad.append("%s has %d bytes, the manifest says %d (truncated or replaced?)" %
                       (p, os.path.getsize(p), e["bytes"]))
        elif sha256(p) != e["sha256"]:
            bad.append("%s does not match its sha256 in the manifest (corrupted or replaced?)" % p)
    if bad:
        die("\n  ".join(["the shipped models do not match %s/MANIFEST.json:" % a.dir] + bad) + "\n" + RESTORE)
    q = os.path.join(a.dir, "quality.json")
    text = json.dumps(m["quality"], indent=2, sort_keys=True) + "\n"
    try:
        with open(q) as f:
            same = f.read() == text
    except OSError:
        same = False
    total = sum(e["bytes"] for e in m["files"])
    if same:
        print("models: up to date (%d files, %.1f MiB, sha256 checked)" % (len(m["files"]), total / 2**20))
        return 0
    tmp = q + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, q)
    print("models: %d files, %.1f MiB, sha256 checked; quality figures in %s" % (len(m["files"]), total / 2**20, q))
    return 0


def cmd_manifest(a):
    files = []
    for rel in SHIPPED:
        p = os.path.join(a.dir, rel)
        if not os.path.isfile(p):
            die("%s is missing: did sf-train all finish?" % p)
        files.append({"path": rel, "sha256": sha256(p), "bytes": os.path.getsize(p)})
    settings = {}
    for name in MODELS:
        try:
            with open(os.path.join(a.dir, name + ".stamp")) as f:
                lines = f.read().splitlines()
            settings[name] = {"key": lines[0], "settings": lines[1] if len(lines) > 1 else ""}
        except OSError as e:
            die("%s: %s" % (name, e))
    try:
        with open(os.path.join(a.dir, "quality.json")) as f:
            quality = json.load(f)
    except (OSError, ValueError) as e:
        die("%s/quality.json: %s" % (a.dir, e))
    m = {
        "what": "the embedded world's trained models (docs/models.md)",
        "date": datetime.date.today().isoformat(),
        "command": a.command,
        "scale": a.scale,
        "train_s": a.train_s,
        "machine": "%d CPU cores (%s)" % (os.cpu_count() or 0, os.uname().machine),
        "files": files,
        "total_bytes": sum(e["bytes"] for e in files),
        "models": settings,
        "quality": quality,
    }
    tmp = os.path.join(a.dir, "MANIFEST.json.tmp")
    with open(tmp, "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")
    os.replace(tmp, os.path.join(a.dir, "MANIFEST.json"))
    print("models: wrote %s/MANIFEST.json (%d files, %.1f MiB)" % (a.dir, len(files), m["total_bytes"] / 2**20))
    return 0


def safetensors(path):
    """name -> (dtype, shape, raw bytes) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: shorter than a safetensors header" % path)
    (n,) = struct.unpack("<Q", data[:8])
    hdr = json.loads(data[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], v["shape"], data[8 + n + b:8 + n + e])
    return out


def tensor_diff(p1, p2):
    """Largest |a - b| over every tensor, and the tensor it is in."""
    fmt = {"F32": "f", "F16": "e", "F64": "d", "I64": "q", "I32": "i"}
    a, b = safetensors(p1), safetensors(p2)
    if set(a) != set(b):
        return None, "tensor names differ"
    worst, where = 0.0, ""
    for k in sorted(a):
        if a[k][:2] != b[k][:2]:
            return None, "%s: dtype or shape differs" % k
        f = fmt.get(a[k][0])
        if f is None:
            return None, "%s: dtype %s not compared" % (k, a[k][0])
        if a[k][2] == b[k][2]:
            continue
        n = len(a[k][2]) // struct.calcsize(f)
        x = struct.unpack("<%d%s" % (n, f), a[k][2])
        y = struct.unpack("<%d%s" % (n, f), b[k][2])
        d = max(abs(float(u) - float(v)) for u, v in zip(x, y))
        if d > worst:
            worst, where = d, k
    return worst, where


def flat(q, prefix=""):
    for k, v in q.items():
        if isinstance(v, dict):
            yield from flat(v, prefix + k + ".")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield prefix + k, v


def cmd_compare(a):
    ship, new = load_manifest(a.shipped), load_manifest(a.trained)
    if ship.get("scale") != new.get("scale"):
        print("models: the retraining ran at scale %s, the shipped models at %s: they cannot match; "
              "figures below are for comparison only" % (new.get("scale"), ship.get("scale")))
    nf = {e["path"]: e for e in new["files"]}
    exact = True
    for e in ship["files"]:
        o = nf.get(e["path"])
        if o is None:
            print("  %-32s missing from the retraining" % e["path"])
            exact = False
        elif o["sha256"] == e["sha256"]:
            print("  %-32s bit-exact" % e["path"])
        else:
            exact = False
            if e["path"].endswith(".safetensors"):
                d, where = tensor_diff(os.path.join(a.shipped, e["path"]), os.path.join(a.trained, e["path"]))
                print("  %-32s differs: %s" % (e["path"], "largest |difference| %.3g (in %s)" % (d, where)
                                               if d is not None else where))
            else:
                print("  %-32s differs" % e["path"])
    fq = dict(flat(new["quality"]))
    for k, v in flat(ship["quality"]):
        if k in fq and fq[k] != v and not k.endswith("_s"):
            print("  quality %-40s shipped %s, retrained %s (%+.4g)" % (k, v, fq[k], fq[k] - v))
    print("models: the retraining %s the shipped manifest (retraining %s s, shipped %s s)" %
          ("reproduces, bit for bit," if exact else "does not reproduce bit for bit", new.get("train_s"),
           ship.get("train_s")))
    return 0 if exact else 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("dir")
    c = sub.add_parser("manifest")
    c.add_argument("dir")
    c.add_argument("--command", required=True)
    c.add_argument("--train-s", type=float, required=True)
    c.add_argument("--scale", type=float, default=1.0)
    c = sub.add_parser("compare")
    c.add_argument("shipped")
    c.add_argument("trained")
    a = ap.parse_args()
    return {"check": cmd_check, "manifest": cmd_manifest, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

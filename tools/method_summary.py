#!/usr/bin/env python3
"""method_summary.py: the figures of one run of method "shift" (make demo).

Reads the learner's PPO curve and the per-class counts from Redis, the
manifests of the run and of its baseline run, and the reference statistics
(CLIP embeddings of the base images), and prints:
  - the PPO curve: mean score, nonsense share and KL, and the image-side
    check (image score, faithful share), first and last updates;
  - kept images per class;
  - the shift: mean CLIP similarity x100 of images to their class mean, for
    base images, the baseline's images and the method's images.
Writes the curve as an SVG picture.  Standard library only (Debian's python3).
"""
import argparse
import glob
import json
import math
import os
import struct
import subprocess
import sys


def redis(sock, *args):
    out = subprocess.run(["redis-cli", "-s", sock, *args], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def ppo_curve(sock, run):
    lines = redis(sock, "XRANGE", f"sf:run:{run}:ppo", "-", "+")
    rows, cur = [], None
    i = 0
    while i < len(lines):
        if "-" in lines[i] and lines[i].split("-")[0].isdigit():  # entry id
            if cur:
                rows.append(cur)
            cur = {}
            i += 1
            continue
        if cur is not None and i + 1 < len(lines):
            try:
                cur[lines[i]] = float(lines[i + 1])
            except ValueError:
                pass
            i += 2
        else:
            i += 1
    if cur:
        rows.append(cur)
    return rows


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        vals = struct.unpack(f"<{(b - a) // 4}f", data[a:b])
        out[name] = (t["shape"], vals)
    return out


def cos(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na and nb else 0.0


def base_similarity(data, wnids):
    sims = {}
    for w in wnids:
        files = glob.glob(os.path.join(data, "stats", "*", "world", w + ".safetensors"))
        if not files:
            continue
        t = read_safetensors(sorted(files, key=os.path.getmtime)[-1])
        (n, e), emb = t["embeddings"]
        mean = t["mean"][1]
        sims[w] = sum(cos(emb[i * e:(i + 1) * e], mean) for i in range(n)) / n
    return sims


def manifest(data, run):
    path = os.path.join(data, "datasets", run, "manifest.jsonl")
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []


def mean_by_class(entries, kept_only):
    by = {}
    for e in entries:
        if kept_only and not e["kept"]:
            continue
        by.setdefault(e["class"], []).append(e["clip_class_mean"])
    return {w: sum(v) / len(v) for w, v in by.items()}


def svg(curve, path):
    if not curve:
        return
    W, H, P, TOP = 640, 400, 40, 112
    xs = [r.get("update", i + 1) for i, r in enumerate(curve)]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def line(key, lo, hi, color, dash=""):
        # Updates without the value (the image check: none checked) are
        # left out, not drawn as 0.
        pts = []
        for x, r in zip(xs, curve):
            if key not in r:
                continue
            v = r[key]
            px = P + (x - x0) / (x1 - x0) * (W - 2 * P)
            py = H - P - (v - lo) / (hi - lo) * (H - P - TOP)
            pts.append(f"{px:.1f},{py:.1f}")
        d = f' stroke-dasharray="{dash}"' if dash else ""
        return f'<polyline fill="none" stroke="{color}" stroke-width="2"{d} points="{" ".join(pts)}"/>'

    # The text reward and the image score share one axis, so that reward
    # gaming shows as the two lines parting.
    scores = [r[k] for r in curve for k in ("mean_score", "image_score") if k in r]
    lo, hi = min(scores + [-1.0]), max(scores + [0.0])
    # KL is in nats (several, not a share): its own scale, from 0 (or its
    # lowest, an estimate can dip below 0) to its highest.
    kls = [r.get("kl", 0) for r in curve]
    klo, khi = min(kls + [0.0]), max(kls)
    khi = khi if khi > klo else klo + 1
    legend = [("#1f77b4", "", f"mean score (−cos caption text to class mean; {lo:.2f} to {hi:.2f})"),
              ("#2ca02c", "6,3", "image score (−cos image to class mean), same axis"),
              ("#d62728", "", "nonsense share (0 to 1)"),
              ("#9467bd", "6,3", "faithful share: the image shows the class (0 to 1)"),
              ("#888888", "", f"KL ({klo:.1f} to {khi:.1f} nats)")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{P}" y="14">PPO per update</text>']
    for i, (color, dash, label) in enumerate(legend):
        lx, ly = P, 32 + i * 16
        d = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line x1="{lx}" y1="{ly - 4}" x2="{lx + 20}" y2="{ly - 4}" stroke="{color}" stroke-width="2"{d}/>'
                     f'<text x="{lx + 26}" y="{ly}">{label}</text>')
    parts += [f'<line x1="{P}" y1="{H-P}" x2="{W-P}" y2="{H-P}" stroke="black"/>',
              f'<line x1="{P}" y1="{TOP}" x2="{P}" y2="{H-P}" stroke="black"/>',
              f'<text x="{P}" y="{H-P+16}">{x0:.0f}</text><text x="{W-P-20}" y="{H-P+16}">{x1:.0f}</text>',
              f'<text x="{W // 2 - 40}" y="{H-P+16}">PPO update</text>',
              line("mean_score", lo, hi if hi > lo else lo + 1, "#1f77b4"),
              line("image_score", lo, hi if hi > lo else lo + 1, "#2ca02c", "6,3"),
              line("nonsense", 0.0, 1.0, "#d62728"),
              line("faithful", 0.0, 1.0, "#9467bd", "6,3"),
              line("kl", klo, khi, "#888888"),
              "</svg>"]
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--baseline")
    ap.add_argument("--svg")
    a = ap.parse_args()
    curve = ppo_curve(a.redis, a.run)
    if curve:
        k = max(1, len(curve) // 5)
        first, last = curve[:k], curve[-k:]
        avg = lambda rows, key: sum(r.get(key, 0) for r in rows) / len(rows)
        print(f"PPO ({len(curve)} updates; means of the first and last {k}):")
        for key in ("mean_score", "nonsense", "kl", "kl_coef"):
            print(f"  {key:<11} {avg(first, key):8.4f} -> {avg(last, key):8.4f}")

        # The image-side check: over the checked rollouts of those updates
        # (weighted by how many each checked); n/a where none were.
        def checked(rows, key):
            n = sum(r.get("image_checked", 0) for r in rows if key in r)
            return f"{sum(r[key] * r['image_checked'] for r in rows if key in r) / n:8.4f}" if n else "     n/a"
        for key in ("image_score", "faithful"):
            print(f"  {key:<11} {checked(first, key)} -> {checked(last, key)}")
        print(f"  (image_score and faithful: {sum(int(r.get('image_checked', 0)) for r in curve)} rollouts "
              "checked on the image side in all)")
    counts = dict(zip(*[iter(redis(a.redis, "HGETALL", f"sf:run:{a.run}:classes"))] * 2))
    wnids = sorted({k.split(":")[0] for k in counts})
    print("kept images per class: " + ", ".join(f"{w} {counts.get(w + ':kept', '0')}/{counts.get(w + ':generated', '0')}"
                                                for w in wnids))
    base = base_similarity(a.data, wnids)
    rows = [("base images", base)]
    if a.baseline:
        rows.append((f"SFT policy ({a.baseline}), kept", mean_by_class(manifest(a.data, a.baseline), True)))
    rows.append((f"method ({a.run}), kept", mean_by_class(manifest(a.data, a.run), True)))
    rows.append((f"method ({a.run}), all generated", mean_by_class(manifest(a.data, a.run), False)))
    print("mean CLIP similarity x100 to the class mean (lower = further from the base distribution):")
    b = sum(base.values()) / len(base) if base else float("nan")
    for name, by in rows:
        if not by:
            continue
        m = sum(by.values()) / len(by)
        print(f"  {name:<40} {100 * m:6.2f}   ({100 * (m - b) / b:+.1f}% vs base)")
    if a.svg:
        svg(curve, a.svg)


if __name__ == "__main__":
    sys.exit(main())

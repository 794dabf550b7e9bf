#!/usr/bin/env python3
"""results_verdict.py REPORT.json: where the method wins and loses, from the
report's "Strategies over runs" (make results, docs/results.md): the method
(ppo, mean ± s.d. over its runs) against each other strategy on Table 1's
similarity, Table 2's drops, class fidelity and the Fig. 6 gains, as a
Markdown table with a verdict per figure.

A verdict is "wins" when the method's mean is better than the other's mean
by more than the method's s.d. over its runs (the other's spread too, where
it has several runs), "loses" when worse by as much, else "within noise".
With one PPO run there is no s.d. and no verdict but "one run"."""
import json
import math
import sys

# (key, what the reader sees, better: -1 lower, +1 higher, scale for display)
FIGURES = [
    ("similarity_x100", "Table 1: CLIP similarity ×100 to the class mean", -1, 1),
    ("mahalanobis", "Table 1: Mahalanobis distance", +1, 1),
    ("convnext_drop", "Table 2: ConvNeXt drop from base (points)", +1, 1),
    ("vit_drop", "Table 2: ViT drop from base (points)", +1, 1),
    ("class_fidelity", "class fidelity of the kept images (%)", +1, 100),
    ("kept_share", "kept by the filter (%)", +1, 100),
    ("convnext_world_R_gain_run_classes", "Fig. 6: ConvNeXt gain on world-R (points)", +1, 1),
    ("vit_world_R_gain_run_classes", "Fig. 6: ViT gain on world-R (points)", +1, 1),
    ("convnext_world_A_gain_run_classes", "Fig. 6: ConvNeXt gain on world-A (points)", +1, 1),
    ("vit_world_A_gain_run_classes", "Fig. 6: ViT gain on world-A (points)", +1, 1),
]


def fig(x, scale):
    """A {n, mean, sd} figure as text, or None when it is missing."""
    if not isinstance(x, dict) or x.get("mean") is None or not math.isfinite(x["mean"]):
        return None, None, None
    sd = x.get("sd")
    m = x["mean"] * scale
    s = sd * scale if isinstance(sd, (int, float)) and math.isfinite(sd) else None
    return m, s, ("%.2f ± %.2f" % (m, s)) if s is not None else "%.2f" % m


def main():
    report = json.load(open(sys.argv[1]))
    st = {s["strategy"]: s for s in report.get("strategies", [])}
    if "ppo" not in st:
        print("No ppo run in the report: nothing to compare.")
        return
    ppo = st["ppo"]
    print("| the method against | figure | ppo (mean ± s.d. over %d runs) | the other | verdict |" % ppo["n_runs"])
    print("|---|---|---|---|---|")
    for other in [s for s in st if s not in ("ppo", "base")]:
        o = st[other]
        name = other + (" (a ceiling)" if other == "low-density-oracle" else "")
        if o["n_runs"] > 1:
            name += " (%d runs)" % o["n_runs"]
        for key, what, better, scale in FIGURES:
            pm, ps, ptxt = fig(ppo.get(key), scale)
            om, osd, otxt = fig(o.get(key), scale)
            if pm is None or om is None:
                continue
            if ps is None:
                verdict = "one run"
            else:
                margin = math.hypot(ps, osd or 0.0)
                d = (pm - om) * better
                verdict = "wins" if d > margin else "loses" if d < -margin else "within noise"
            print("| %s | %s | %s | %s | %s |" % (name, what, ptxt, otxt, verdict))
    low = [s for s, x in st.items() if fig(x.get("class_fidelity"), 100)[0] is not None
           and fig(x.get("class_fidelity"), 100)[0] < 95]
    print()
    print("Class fidelity below 95 %%: %s." % (", ".join("`%s` (%.1f %%)" % (s, fig(st[s]["class_fidelity"], 100)[0])
                                                      for s in low) if low else "none"))


if __name__ == "__main__":
    main()

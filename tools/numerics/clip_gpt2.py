"""clip_gpt2.py: independent reference outputs of CLIP and GPT-2.

ml/clip.cpp and ml/gpt2.cpp implement HF's CLIPModel and GPT-2.  This file
implements them again with torch.nn.functional, from the published
architectures (OpenAI CLIP / HF CLIPModel, GPT-2 / HF GPT2Model), not from the
C++, and computes in float64 what they give on deterministic weights
(tools/numerics/fill.py) and inputs.  Each case becomes a fixture in
tests/fixtures/numerics/ that tests/unit/test_ml_numerics_text.c reads: it
fills the same weights in C (tests/unit/numerics_fill.h), writes an HF folder
(config.json + model.safetensors), loads it through the real loader, runs the
forward and compares.

  CLIP: pre-LN transformer blocks (x + attn(ln1 x), x + mlp(ln2 x)), heads of
    width d with queries scaled by d^-1/2, quick_gelu (x sigmoid(1.702 x)).
    Text: token + position embeddings, causal mask, final_layer_norm, the
    feature at the end token (HF: the first eos_token_id, or for the legacy
    eos_token_id 2 of OpenAI's converted configs the largest id), then
    text_projection (no bias).  Vision: a bias-free patch convolution, the
    class token in front, position embeddings, pre_layrnorm, the blocks, the
    class token through post_layernorm, visual_projection (no bias).  Both
    embeddings L2-normalised.
  GPT-2: token + position embeddings, pre-LN blocks, attention from one
    Conv1D c_attn whose weight is stored (in, out) and split q, k, v, causal,
    scaled by d^-1/2, c_proj; MLP c_fc, gelu_new (the tanh approximation),
    c_proj; ln_f; logits against the tied token embedding.

Two sizes of each: the world CLIP's shapes and ViT-B/32's; a small GPT-2 and
GPT-2 124M.  For 124M the fixture keeps the logits of every position at 64
vocabulary ids and the log-sum-exp of each position over the whole
vocabulary (which every logit moves), so that it stays small.

Each fixture also names one weight to perturb (an element of an MLP deep in
each tower) and the change it makes in float64, so the test can show that
its comparison fails when one weight is wrong.

    /usr/bin/python3 tools/numerics/clip_gpt2.py

writes them all, and the CLIP tokenizer's fixture too (clip_bpe_ref.py).
"""
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_bpe_ref  # noqa: E402
from fill import fill  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTDIR = os.path.join(ROOT, "tests", "fixtures", "numerics")
DT = torch.float64

# Tolerances, max|got - want| / max|want| per output (embeddings: over all
# rows; GPT-2: over the kept logits, and the log-sum-exps against the same
# scale).  fp32 in the shim against this float64 reference measured 3.5e-7
# to 9e-7 on the CPU (the test prints it); 2e-5 leaves a factor of 20 for
# other summation orders and sits well under what the one perturbed weight
# changes (2e-4 and more).  bf16 rounds weights and activations to 8 bits of
# mantissa, and how far that moves these random networks depends on the
# network: the tolerance is BF16_MARGIN times what the same forward gives
# here with bf16 weights and bf16 arithmetic (also in the fixture), at least
# BF16_MIN.
TOL_FP32 = 2e-5
BF16_MARGIN, BF16_MIN = 2.5, 0.04


def r9(x):
    """Floats to 9 significant digits (enough for float32, and short)."""
    return [float("%.9g" % v) for v in np.asarray(x, dtype=np.float64).ravel()]


class Weights:
    """The tensor list of a fixture, filled as the C test fills it."""

    def __init__(self):
        self.specs = []
        self.t = {}

    def add(self, name, shape, scale, offset=0.0):
        scale, offset = round(scale, 6), round(offset, 6)
        self.specs.append({"name": name, "shape": list(shape), "scale": scale, "offset": offset})
        self.t[name] = torch.from_numpy(fill(name, shape, scale, offset)).to(DT)

    def __getitem__(self, name):
        return self.t[name]

    def nparams(self):
        return sum(int(np.prod(s["shape"])) for s in self.specs)


def rel(got, want):
    """max |got - want| / max |want|, in float64."""
    got, want = got.to(torch.float64), want.to(torch.float64)
    return float((got - want).abs().max() / want.abs().max())


def bf16_tolerance(w, forward, want):
    """(error, tolerance) of forward() with every weight rounded to bf16 and
    bf16 arithmetic, against the float64 outputs `want` (a list: forward
    returns as many tensors)."""
    saved = w.t
    w.t = {k: v.to(torch.bfloat16) for k, v in saved.items()}
    try:
        with torch.no_grad():
            got = forward()
    finally:
        w.t = saved
    err = max(rel(g, x) for g, x in zip(got, want))
    return err, max(BF16_MIN, float("%.2g" % (BF16_MARGIN * err)))


def mat(fan_in):
    """Uniform +-sqrt(3 / fan_in): standard deviation 1/sqrt(fan_in)."""
    return math.sqrt(3.0 / fan_in)


def layer_norm(x, w, b, eps):
    return F.layer_norm(x, (x.shape[-1],), w, b, eps)


def attention(q, k, v, heads, causal):
    """q, k, v (B, T, C) -> (B, T, C), softmax(q k^T / sqrt(d)) v per head."""
    B, T, C = q.shape
    d = C // heads
    q, k, v = (t.reshape(B, T, heads, d).transpose(1, 2) for t in (q, k, v))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    if causal:
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    return (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)


# ---- CLIP ----

def clip_weights(c):
    w = Weights()
    E = c["projection_dim"]
    t, v = c["text_config"], c["vision_config"]
    Ct, Mt, Cv, Mv = t["hidden_size"], t["intermediate_size"], v["hidden_size"], v["intermediate_size"]
    P, S = v["patch_size"], v["image_size"]
    w.add("text_model.embeddings.token_embedding.weight", (t["vocab_size"], Ct), 0.1)
    w.add("text_model.embeddings.position_embedding.weight", (t["max_position_embeddings"], Ct), 0.05)

    def tower(prefix, L, C, M):
        for i in range(L):
            p = "%s.encoder.layers.%d." % (prefix, i)
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                w.add(p + "self_attn.%s.weight" % proj, (C, C), mat(C))
                w.add(p + "self_attn.%s.bias" % proj, (C,), 0.02)
            for ln in ("layer_norm1", "layer_norm2"):
                w.add(p + ln + ".weight", (C,), 0.1, 1.0)
                w.add(p + ln + ".bias", (C,), 0.02)
            w.add(p + "mlp.fc1.weight", (M, C), mat(C))
            w.add(p + "mlp.fc1.bias", (M,), 0.02)
            w.add(p + "mlp.fc2.weight", (C, M), mat(M))
            w.add(p + "mlp.fc2.bias", (C,), 0.02)

    tower("text_model", t["num_hidden_layers"], Ct, Mt)
    w.add("text_model.final_layer_norm.weight", (Ct,), 0.1, 1.0)
    w.add("text_model.final_layer_norm.bias", (Ct,), 0.02)
    w.add("vision_model.embeddings.class_embedding", (Cv,), 0.1)
    w.add("vision_model.embeddings.patch_embedding.weight", (Cv, 3, P, P), mat(3 * P * P))
    w.add("vision_model.embeddings.position_embedding.weight", ((S // P) ** 2 + 1, Cv), 0.05)
    w.add("vision_model.pre_layrnorm.weight", (Cv,), 0.1, 1.0)
    w.add("vision_model.pre_layrnorm.bias", (Cv,), 0.02)
    tower("vision_model", v["num_hidden_layers"], Cv, Mv)
    w.add("vision_model.post_layernorm.weight", (Cv,), 0.1, 1.0)
    w.add("vision_model.post_layernorm.bias", (Cv,), 0.02)
    w.add("visual_projection.weight", (E, Cv), mat(Cv))
    w.add("text_projection.weight", (E, Ct), mat(Ct))
    w.add("logit_scale", (), 0.01, math.log(1 / 0.07))
    return w


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def clip_encoder(w, prefix, x, L, heads, eps, causal):
    for i in range(L):
        p = "%s.encoder.layers.%d." % (prefix, i)
        lin = lambda n, h: F.linear(h, w[p + n + ".weight"], w[p + n + ".bias"])  # noqa: E731
        h = layer_norm(x, w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)
        a = attention(lin("self_attn.q_proj", h), lin("self_attn.k_proj", h), lin("self_attn.v_proj", h), heads, causal)
        x = x + lin("self_attn.out_proj", a)
        h = layer_norm(x, w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        x = x + lin("mlp.fc2", quick_gelu(lin("mlp.fc1", h)))
    return x


def clip_text(w, c, ids):
    t = c["text_config"]
    eps = t["layer_norm_eps"]
    ids = torch.tensor(ids, dtype=torch.long)
    B, T = ids.shape
    x = w["text_model.embeddings.token_embedding.weight"][ids] + \
        w["text_model.embeddings.position_embedding.weight"][:T]
    x = clip_encoder(w, "text_model", x, t["num_hidden_layers"], t["num_attention_heads"], eps, True)
    x = layer_norm(x, w["text_model.final_layer_norm.weight"], w["text_model.final_layer_norm.bias"], eps)
    eos = t["eos_token_id"]
    at = ids.argmax(-1) if eos == 2 else (ids == eos).int().argmax(-1)
    e = x[torch.arange(B), at] @ w["text_projection.weight"].T
    return e / e.norm(dim=-1, keepdim=True)


def clip_image(w, c, pixels):
    v = c["vision_config"]
    eps = v["layer_norm_eps"]
    P = v["patch_size"]
    p = F.conv2d(pixels, w["vision_model.embeddings.patch_embedding.weight"], stride=P)  # (B, C, g, g)
    p = p.flatten(2).transpose(1, 2)
    cls = w["vision_model.embeddings.class_embedding"].expand(p.shape[0], 1, -1)
    x = torch.cat([cls, p], 1) + w["vision_model.embeddings.position_embedding.weight"]
    x = layer_norm(x, w["vision_model.pre_layrnorm.weight"], w["vision_model.pre_layrnorm.bias"], eps)
    x = clip_encoder(w, "vision_model", x, v["num_hidden_layers"], v["num_attention_heads"], eps, False)
    pooled = layer_norm(x[:, 0], w["vision_model.post_layernorm.weight"], w["vision_model.post_layernorm.bias"], eps)
    e = pooled @ w["visual_projection.weight"].T
    return e / e.norm(dim=-1, keepdim=True)


def clip_config(size):
    act = "quick_gelu"
    if size == "world":
        # sf_clip_config_world's shapes with the world tokenizer's vocabulary
        # (models/clip-world: 1445 tokens, the end token last).
        text = dict(vocab_size=1445, hidden_size=96, intermediate_size=384, num_hidden_layers=1,
                    num_attention_heads=4, max_position_embeddings=32, eos_token_id=1444)
        vision = dict(image_size=32, patch_size=8, hidden_size=128, intermediate_size=512,
                      num_hidden_layers=2, num_attention_heads=4)
        E = 128
    else:
        # openai/clip-vit-base-patch32, with its legacy eos_token_id 2.
        text = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                    num_attention_heads=8, max_position_embeddings=77, eos_token_id=2)
        vision = dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                      num_hidden_layers=12, num_attention_heads=12)
        E = 512
    for d in (text, vision):
        d.update(hidden_act=act, layer_norm_eps=1e-5)
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": E,
            "text_config": text, "vision_config": vision}


def clip_case(size, rng):
    c = clip_config(size)
    t, v = c["text_config"], c["vision_config"]
    w = clip_weights(c)
    V, T = t["vocab_size"], t["max_position_embeddings"]
    sot, eot = V - 2, V - 1
    # Rows as CLIP's tokenizer makes them: start, words, end, zero padding;
    # one short, one middling, one filling the context.
    ids = []
    for n in (3, T // 2, T - 2):
        ids.append([sot] + [rng.randrange(1, V - 2) for _ in range(n)] + [eot] + [0] * (T - n - 2))
    S, B = v["image_size"], 2
    pix = {"name": "input.pixels", "shape": [B, 3, S, S], "scale": 1.8, "offset": 0.0}
    pixels = torch.from_numpy(fill(pix["name"], pix["shape"], pix["scale"], pix["offset"])).to(DT)
    with torch.no_grad():
        img, txt = clip_image(w, c, pixels), clip_text(w, c, ids)
        # One element of an MLP weight deep in each tower, changed by its
        # tensor's range (a modest change: the weights span +-range).
        Lt, Lv = t["num_hidden_layers"], v["num_hidden_layers"]
        perturb = [
            {"name": "text_model.encoder.layers.%d.mlp.fc1.weight" % (Lt // 2), "index": 7 * t["hidden_size"] + 5},
            {"name": "vision_model.encoder.layers.%d.mlp.fc1.weight" % (Lv // 2), "index": 11 * v["hidden_size"] + 3},
        ]
        saved = {}
        for p in perturb:
            spec = next(s for s in w.specs if s["name"] == p["name"])
            p["delta"] = spec["scale"]
            saved[p["name"]] = w.t[p["name"]].clone()
            w.t[p["name"]].view(-1)[p["index"]] += p["delta"]
        img2, txt2 = clip_image(w, c, pixels), clip_text(w, c, ids)
        for k, x in saved.items():
            w.t[k] = x
    perturb[0]["rel_change"] = rel(txt2, txt)
    perturb[1]["rel_change"] = rel(img2, img)
    emu, tol16 = bf16_tolerance(w, lambda: (clip_image(w, c, pixels.to(torch.bfloat16)), clip_text(w, c, ids)),
                                (img, txt))
    return {
        "model": "clip",
        "what": "CLIPModel, %s shapes; expected values from tools/numerics/clip_gpt2.py (torch.nn, float64)" % size,
        "config": c,
        "num_params": w.nparams(),
        "tensors": w.specs,
        "inputs": {"pixels": pix, "tokens": ids},
        "expected": {
            "image_embeds": [r9(r) for r in img],
            "text_embeds": [r9(r) for r in txt],
            "logit_scale": float("%.9g" % math.exp(float(w["logit_scale"]))),
        },
        "tolerance": {"fp32": TOL_FP32, "bf16": tol16, "bf16_torch_err": float("%.3g" % emu)},
        "perturb": perturb,
    }


# ---- GPT-2 ----

def gpt2_weights(c, prefix):
    w = Weights()
    C, V, L = c["n_embd"], c["vocab_size"], c["n_layer"]
    w.add(prefix + "wte.weight", (V, C), 0.1)
    w.add(prefix + "wpe.weight", (c["n_positions"], C), 0.05)
    for i in range(L):
        p = "%sh.%d." % (prefix, i)
        w.add(p + "ln_1.weight", (C,), 0.1, 1.0)
        w.add(p + "ln_1.bias", (C,), 0.02)
        w.add(p + "attn.c_attn.weight", (C, 3 * C), mat(C))      # Conv1D: (in, out)
        w.add(p + "attn.c_attn.bias", (3 * C,), 0.02)
        w.add(p + "attn.c_proj.weight", (C, C), mat(C))
        w.add(p + "attn.c_proj.bias", (C,), 0.02)
        w.add(p + "ln_2.weight", (C,), 0.1, 1.0)
        w.add(p + "ln_2.bias", (C,), 0.02)
        w.add(p + "mlp.c_fc.weight", (C, 4 * C), mat(C))
        w.add(p + "mlp.c_fc.bias", (4 * C,), 0.02)
        w.add(p + "mlp.c_proj.weight", (4 * C, C), mat(4 * C))
        w.add(p + "mlp.c_proj.bias", (C,), 0.02)
    w.add(prefix + "ln_f.weight", (C,), 0.1, 1.0)
    w.add(prefix + "ln_f.bias", (C,), 0.02)
    return w


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def gpt2_logits(w, c, prefix, ids):
    ids = torch.tensor(ids, dtype=torch.long)
    B, T = ids.shape
    C, eps = c["n_embd"], c["layer_norm_epsilon"]
    conv1d = lambda h, n: h @ w[n + ".weight"] + w[n + ".bias"]  # noqa: E731
    x = w[prefix + "wte.weight"][ids] + w[prefix + "wpe.weight"][:T]
    for i in range(c["n_layer"]):
        p = "%sh.%d." % (prefix, i)
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        q, k, v = conv1d(h, p + "attn.c_attn").split(C, dim=-1)
        x = x + conv1d(attention(q, k, v, c["n_head"], True), p + "attn.c_proj")
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        x = x + conv1d(gelu_new(conv1d(h, p + "mlp.c_fc")), p + "mlp.c_proj")
    x = layer_norm(x, w[prefix + "ln_f.weight"], w[prefix + "ln_f.bias"], eps)
    return x @ w[prefix + "wte.weight"].T


def gpt2_config(size):
    base = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "n_inner": None}
    if size == "small":
        base.update(n_layer=3, n_head=4, n_embd=64, n_positions=32, n_ctx=32, vocab_size=160,
                    bos_token_id=159, eos_token_id=159)
    else:
        base.update(n_layer=12, n_head=12, n_embd=768, n_positions=1024, n_ctx=1024, vocab_size=50257,
                    bos_token_id=50256, eos_token_id=50256)
    return base


def gpt2_case(size, rng):
    c = gpt2_config(size)
    # The small one has GPT2LMHeadModel's "transformer." prefix, the 124M one
    # the bare names of openai-community/gpt2's model.safetensors.
    prefix = "transformer." if size == "small" else ""
    w = gpt2_weights(c, prefix)
    V = c["vocab_size"]
    B, T = 2, (16 if size == "small" else 12)
    ids = [[rng.randrange(V) for _ in range(T)] for _ in range(B)]
    with torch.no_grad():
        logits = gpt2_logits(w, c, prefix, ids)
        p = {"name": prefix + "h.%d.mlp.c_fc.weight" % (c["n_layer"] // 2), "index": 9 * 4 * c["n_embd"] + 13}
        spec = next(s for s in w.specs if s["name"] == p["name"])
        p["delta"] = spec["scale"]
        saved = w.t[p["name"]].clone()
        w.t[p["name"]].view(-1)[p["index"]] += p["delta"]
        logits2 = gpt2_logits(w, c, prefix, ids)
        w.t[p["name"]] = saved
    exp = {}
    if size == "small":
        cols = list(range(V))
    else:
        # 64 ids: the inputs' own, both ends of the vocabulary, the rest drawn.
        cols = sorted({0, 1, V - 2, V - 1} | {t for row in ids for t in row})
        while len(cols) < 64:
            cols = sorted(set(cols) | {rng.randrange(V)})
        exp["logsumexp"] = [r9(r) for r in torch.logsumexp(logits, -1)]
    exp["vocab_ids"] = cols
    exp["logits"] = [[r9(logits[b, t, cols]) for t in range(T)] for b in range(B)]
    p["rel_change"] = rel(logits2[:, :, cols], logits[:, :, cols])
    emu, tol16 = bf16_tolerance(w, lambda: (gpt2_logits(w, c, prefix, ids)[:, :, cols],), (logits[:, :, cols],))
    return {
        "model": "gpt2",
        "what": "GPT-2 (GPT2LMHeadModel), %s; expected values from tools/numerics/clip_gpt2.py (torch.nn, float64)"
                % size,
        "config": c,
        "num_params": w.nparams(),
        "tensors": w.specs,
        "inputs": {"tokens": ids},
        "expected": exp,
        "tolerance": {"fp32": TOL_FP32, "bf16": tol16, "bf16_torch_err": float("%.3g" % emu)},
        "perturb": [p],
    }


def main():
    torch.set_num_threads(1)
    os.makedirs(OUTDIR, exist_ok=True)
    cases = [("clip_world", clip_case, "world"), ("clip_vit_b32", clip_case, "vit_b32"),
             ("gpt2_small", gpt2_case, "small"), ("gpt2_124m", gpt2_case, "124m")]
    for name, fn, size in cases:
        t0 = time.time()
        doc = fn(size, random.Random(name))
        path = os.path.join(OUTDIR, name + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        print("%s: %d parameters, %d bytes, %.1f s; perturbation changes the output by %s; bf16 error %.3g, "
              "tolerance %g" % (os.path.relpath(path, ROOT), doc["num_params"], os.path.getsize(path),
                                time.time() - t0, ", ".join("%.3g" % p["rel_change"] for p in doc["perturb"]),
                                doc["tolerance"]["bf16_torch_err"], doc["tolerance"]["bf16"]), file=sys.stderr)
    clip_bpe_ref.main()


if __name__ == "__main__":
    main()

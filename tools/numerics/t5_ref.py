"""t5_ref.py: the torch.nn reference of tests/unit/test_ml_t5.c.

    /usr/bin/python3 tools/numerics/t5_ref.py DIR IN.json OUT.f32

Reads an HF folder DIR that sf_t5_save wrote (config.json and an F32
model.safetensors with T5EncoderModel's names, parsed here from the file
format, not with the C code's reader), runs the rows of IN.json
({"tokens": (B, T)}, pad id 0 masked out of attention) through the encoder
in float64, and writes OUT.f32: the last hidden state (B, T, d_model) as
little-endian float32.

The encoder is T5 v1.1's as published (Raffel et al. 2020, with v1.1's
gated-GELU feed-forward and no shared input/output embedding), written here
from the architecture, not from ml/t5.cpp:
  - token embeddings, unscaled; no absolute positions;
  - each layer: x += SelfAttention(RMSNorm(x)); x += FF(RMSNorm(x)), where
    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w (no mean, no bias);
  - attention logits q.k without the 1/sqrt(d) factor (T5 folds it into the
    initialisation), plus a learned bias per head indexed by the bucket of
    the key's offset from the query, and -inf on padded keys;
  - buckets as Mesh TensorFlow's _relative_position_bucket (bidirectional):
    half the buckets for keys after the query; within a half, offsets below
    max_exact = buckets/4 exactly, beyond that log-spaced up to
    max_distance, farther ones in the last bucket.  The log is taken in
    float32, as the released implementations (Mesh TF, HF) take it, so that
    offsets on a bin's edge land where they do there;
  - FF(x) = wo(gelu_tanh(wi_0 x) * wi_1 x);
  - a final RMSNorm.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn

from st_torch import read_safetensors


def bucket(offset, num_buckets, max_distance):
    """offset = key position - query position (LongTensor) -> bucket ids."""
    half = num_buckets // 2
    ret = (offset > 0).long() * half
    n = offset.abs()
    max_exact = half // 2
    logpart = torch.log(n.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact)
    large = (max_exact + logpart.long()).clamp(max=half - 1)
    return ret + torch.where(n < max_exact, n, large)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, dtype=torch.float64))
        self.eps = eps

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Encoder(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        self.cfg = cfg
        self.w = w
        self.eps = cfg["layer_norm_epsilon"]

    def norm(self, x, name):
        n = RMSNorm(x.shape[-1], self.eps)
        with torch.no_grad():
            n.weight.copy_(self.w[name])
        return n(x)

    def forward(self, ids):
        c, w = self.cfg, self.w
        B, T = ids.shape
        H, Dk = c["num_heads"], c["d_kv"]
        x = w["shared.weight"][ids]                                    # (B, T, D)
        pos = torch.arange(T)
        offset = pos[None, :] - pos[:, None]                           # [q, k] = k - q
        table = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        bias = table[bucket(offset, c["relative_attention_num_buckets"],
                            c["relative_attention_max_distance"])]       # (T, T, H)
        bias = bias.permute(2, 0, 1)[None]                             # (1, H, T, T)
        keymask = (ids == c.get("pad_token_id", 0))[:, None, None, :]  # (B, 1, 1, T)
        for l in range(c["num_layers"]):
            p = "encoder.block.%d.layer." % l
            h = self.norm(x, p + "0.layer_norm.weight")
            q, k, v = ((h @ w[p + "0.SelfAttention.%s.weight" % s].T).view(B, T, H, Dk).transpose(1, 2)
                       for s in "qkv")
            logits = (q @ k.transpose(-1, -2) + bias).masked_fill(keymask, float("-inf"))
            y = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(B, T, H * Dk)
            x = x + y @ w[p + "0.SelfAttention.o.weight"].T
            h = self.norm(x, p + "1.layer_norm.weight")
            g = torch.nn.functional.gelu(h @ w[p + "1.DenseReluDense.wi_0.weight"].T, approximate="tanh")
            x = x + (g * (h @ w[p + "1.DenseReluDense.wi_1.weight"].T)) @ w[p + "1.DenseReluDense.wo.weight"].T
        return self.norm(x, "encoder.final_layer_norm.weight")


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    d, inp, outp = sys.argv[1:]
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    if cfg.get("feed_forward_proj") != "gated-gelu":
        raise SystemExit("%s: feed_forward_proj %r (this reference is T5 v1.1's gated-gelu)"
                         % (d, cfg.get("feed_forward_proj")))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    with open(inp) as f:
        ids = torch.tensor(json.load(f)["tokens"], dtype=torch.long)
    with torch.no_grad():
        out = Encoder(cfg, w)(ids)
    with open(outp, "wb") as f:
        f.write(out.to(torch.float32).contiguous().numpy().tobytes())


if __name__ == "__main__":
    main()

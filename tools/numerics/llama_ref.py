"""llama_ref.py: the torch.nn reference of tests/unit/test_ml_llama.c.

    /usr/bin/python3 tools/numerics/llama_ref.py OUTDIR [CASE...]
    /usr/bin/python3 tools/numerics/llama_ref.py --folder DIR IN.json OUT.f32

Writes, for each case, an HF folder OUTDIR/CASE (config.json and
model.safetensors, or shards with model.safetensors.index.json) with random
weights, and beside them what the C test compares against:
    OUTDIR/CASE/ref.json    tokens (B, T) right-padded, lengths, B, T, V, the
                            reference's dtype, and a greedy continuation of
                            a prompt (ids and the smallest top-1 margin)
    OUTDIR/CASE/logits.f32  (B, T, V) little-endian float32, each row run
                            alone at its own length; padded positions 0

The model is LLaMA as published (Touvron et al. 2023) in HF's form, written
here from the architecture, not from ml/llama.cpp: pre-norm RMSNorm
(x / sqrt(mean(x^2) + eps) * w), rotary embeddings on queries and keys that
rotate dimension i with dimension i + D/2 by the angle pos * theta^(-2i/D)
(HF's checkpoint layout), causal softmax attention over D-dimensional heads
with num_key_value_heads key-value heads shared by consecutive query heads,
the SwiGLU MLP down(silu(gate(x)) * up(x)), a final RMSNorm and the lm_head
(or the embedding matrix when tied).

With --folder, the reference reads an HF folder that someone else wrote
(sf_llama_save's: config.json and an F32 model.safetensors, parsed here from
the file format, not with the C code's reader), runs the rows of IN.json
({"tokens": (B, T), "lengths": (B)}) each alone at its length, in float64,
and writes OUT.f32 as above.

Cases:
    small    2 layers, hidden 64, 4 heads (no GQA), intermediate 160, vocab
             300, untied lm_head; config.json leaves out rope_theta and
             tie_word_embeddings (HF's defaults); F32; float64 reference
    gqa      2 layers, hidden 64, 8 heads over 2 kv heads, intermediate 96,
             vocab 300, tied, rope_theta 500000; F32; float64 reference
    sharded  small's tensors in three shards with an index
    big7b    LLaMA-7B's shapes (hidden 4096, 32 heads, 32 kv heads,
             intermediate 11008, vocab 32000) on 1 layer, tied (an untied
             lm_head would add 0.5 GB to each side); BF16 in the file, as
             released checkpoints are; float32 reference (float64 would
             need 2.7 GB)

Weights: embeddings N(0, C^-1/2) (tied logits of a few units), linear
layers N(0, 1/fan_in) so that activations stay O(1) and attention is far
from uniform, norms 1 + N(0, 0.1^2) so that a dropped norm weight shows.
"""
import json
import os
import struct
import sys

import torch
import torch.nn as nn

from st_torch import read_safetensors
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def apply_rotary(x, theta):
    """x (B, H, T, D): dimension i and i + D/2 form a plane rotated by
    pos * theta^(-2i/D), pos the position 0..T-1."""
    B, H, T, D = x.shape
    half = D // 2
    i = torch.arange(half, dtype=torch.float64)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * theta ** (-2.0 * i / D)[None, :]   # (T, D/2)
    c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * c - b * s, a * s + b * c], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
        self.H, self.KV, self.D = H, KV, C // H
        self.theta = cfg.get("rope_theta", 10000.0)
        self.q_proj = nn.Linear(C, H * self.D, bias=False)
        self.k_proj = nn.Linear(C, KV * self.D, bias=False)
        self.v_proj = nn.Linear(C, KV * self.D, bias=False)
        self.o_proj = nn.Linear(H * self.D, C, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        q, k = apply_rotary(q, self.theta), apply_rotary(k, self.theta)
        # Consecutive query heads share a key-value head.
        group = self.H // self.KV
        k = torch.repeat_interleave(k, group, dim=1)
        v = torch.repeat_interleave(v, group, dim=1)
        scores = q @ k.transpose(-1, -2) / (self.D ** 0.5)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        scores = scores.masked_fill(~causal, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.D))


class MLP(nn.Module):
    def __init__(self, C, I):
        super().__init__()
        self.gate_proj = nn.Linear(C, I, bias=False)
        self.up_proj = nn.Linear(C, I, bias=False)
        self.down_proj = nn.Linear(I, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = MLP(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x):
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg.get("rms_norm_eps", 1e-6))


class LlamaRef(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.model = Body(cfg)
        self.tied = cfg.get("tie_word_embeddings", False)
        if not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def forward(self, ids):  # (B, T) -> (B, T, V)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x)
        x = self.model.norm(x)
        w = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return x @ w.t()


def init_weights(model, cfg, gen):
    """In place, so that the 7B shapes never hold a second copy."""
    C = cfg["hidden_size"]
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(1.0, 0.1, generator=gen)
            elif "embed_tokens" in name:
                p.normal_(0.0, C ** -0.25, generator=gen)
            else:
                p.normal_(0.0, p.shape[1] ** -0.5, generator=gen)


ROWS = 1024   # rows per chunk when rounding and writing (bounds the copies)


def write_safetensors(path, tensors, dtype):
    """tensors: [(name, float tensor)] written as F32 or BF16."""
    size = 2 if dtype == "BF16" else 4
    header, off = {}, 0
    for name, t in tensors:
        n = t.numel() * size
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, t in tensors:
            t = t.detach().contiguous()
            for r in range(0, max(1, t.shape[0]), ROWS):
                part = t[r:r + ROWS]
                if dtype == "BF16":
                    f.write(part.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
                else:
                    f.write(part.to(torch.float32).numpy().tobytes())
    return off


def hf_tensors(model):
    return [(n, p) for n, p in model.named_parameters()]


def reference(model, tokens, lengths, V):
    B, T = len(tokens), len(tokens[0])
    out = torch.zeros(B, T, V, dtype=torch.float32)
    with torch.no_grad():
        for b in range(B):
            ids = torch.tensor([tokens[b][: lengths[b]]])
            out[b, : lengths[b]] = model(ids)[0].to(torch.float32)
    return out


def greedy(model, prompt, n):
    ids, margin = list(prompt), float("inf")
    with torch.no_grad():
        for _ in range(n):
            last = model(torch.tensor([ids]))[0, -1]
            top = torch.topk(last, 2).values
            margin = min(margin, float(top[0] - top[1]))
            ids.append(int(last.argmax()))
    return ids[len(prompt):], margin


def make_case(out, name, cfg, dtype, file_dtype, seed, B, T, lengths, shards=1, greedy_steps=0):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LlamaRef(cfg)
    init_weights(model, cfg, gen)
    if file_dtype == "BF16":
        # The reference runs on the weights the file holds.
        with torch.no_grad():
            for p in model.parameters():
                for r in range(0, p.shape[0], ROWS):
                    p[r:r + ROWS] = p[r:r + ROWS].to(torch.bfloat16).to(torch.float32)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tensors = hf_tensors(model)
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), tensors, file_dtype)
    else:
        per = -(-len(tensors) // shards)
        weight_map, total = {}, 0
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = tensors[s * per:(s + 1) * per]
            total += write_safetensors(os.path.join(d, fn), part, file_dtype)
            weight_map.update({n: fn for n, _ in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    model = model.to(dtype)
    g = torch.Generator().manual_seed(seed + 1)
    V = cfg["vocab_size"]
    tokens = torch.randint(0, V, (B, T), generator=g).tolist()
    ref = {"B": B, "T": T, "V": V, "tokens": tokens, "lengths": lengths, "reference_dtype": str(dtype)}
    logits = reference(model, tokens, lengths, V)
    with open(os.path.join(d, "logits.f32"), "wb") as f:
        f.write(logits.contiguous().numpy().astype("<f4").tobytes())
    if greedy_steps:
        prompt = tokens[0][:5]
        ids, margin = greedy(model, prompt, greedy_steps)
        ref["greedy"] = {"prompt": prompt, "tokens": ids, "min_margin": margin}
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(ref, f)
    print("%s: %d parameters, logits max |x| %.3f" % (name, sum(p.numel() for p in model.parameters()),
                                                       float(logits.abs().max())))


SMALL = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
         "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 4,
         "intermediate_size": 160, "vocab_size": 300, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
         "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
GQA = dict(SMALL, num_attention_heads=8, num_key_value_heads=2, intermediate_size=96, tie_word_embeddings=True,
           rope_theta=500000.0, rms_norm_eps=1e-6)
BIG = dict(SMALL, num_hidden_layers=1, hidden_size=4096, num_attention_heads=32, num_key_value_heads=32,
           intermediate_size=11008, vocab_size=32000, max_position_embeddings=4096, rms_norm_eps=1e-6,
           rope_theta=10000.0, tie_word_embeddings=True, torch_dtype="bfloat16")


def run_folder(d, inp, outp):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model = LlamaRef(cfg).to(torch.float64)
    state = read_safetensors(os.path.join(d, "model.safetensors"))
    # strict: a tensor missing from the file, or one the model lacks, fails.
    model.load_state_dict(state, strict=True)
    with open(inp) as f:
        rows = json.load(f)
    logits = reference(model, rows["tokens"], rows["lengths"], cfg["vocab_size"])
    with open(outp, "wb") as f:
        f.write(logits.contiguous().numpy().astype("<f4").tobytes())
    print("%s: %d tensors, logits max |x| %.3f" % (d, len(state), float(logits.abs().max())))


def main():
    if sys.argv[1] == "--folder":
        run_folder(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    out = sys.argv[1]
    want = sys.argv[2:] or ["small", "gqa", "sharded", "big7b"]
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cases = {
        "small": lambda: make_case(out, "small", SMALL, torch.float64, "F32", 11, 2, 9, [9, 6],
                                   greedy_steps=10),
        "gqa": lambda: make_case(out, "gqa", GQA, torch.float64, "F32", 12, 2, 9, [7, 9],
                                 greedy_steps=10),
        "sharded": lambda: make_case(out, "sharded", SMALL, torch.float64, "F32", 11, 2, 9, [9, 6],
                                     shards=3),
        "big7b": lambda: make_case(out, "big7b", BIG, torch.float32, "BF16", 13, 1, 8, [8]),
    }
    for c in want:
        cases[c]()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""bench_parity.py: the shim against eager PyTorch, training and inference.

    /usr/bin/python3 tools/bench_parity.py [--threads 1] [--reps 3] [--rounds 1] [--small]
                                           [--only NAME,...] [--c-default-malloc] [--json FILE]

(Debian's python3 with python3-torch 1.13: the libtorch the shim links.)

One invocation times the same computations twice, on the same thread count:
through the shim's C API (build/bench/bench_ml_parity, or $SF_BUILD's) and
here, as ordinary eager PyTorch written from the shim's source: the same
architectures (torch.nn modules with the shim's parameter names, drawn as it
draws them), the same losses, forwards with and without grad, optimisers
(torch.optim's single-tensor Adam and AdamW, as the C++ ones), dtype
(float32), batch and shapes.  The C program defines the workloads: it prints
each one's specification, and this script builds its inputs from that, so the
two sides cannot disagree on a shape.  Every step runs once as a warm-up, then
--reps times; the best time counts.  Each workload's sides run back to back
(a process each), --rounds times over; the table has elapsed seconds and, as
the last column, the ratio of process CPU seconds, which a busy neighbour on
a shared machine disturbs less (with one thread; with more it counts every
thread's time, spinning included).

The shim's sf_ml_init keeps glibc from returning freed memory (M_MMAP_MAX 0,
M_TRIM_THRESHOLD 1 GiB).  The PyTorch side runs twice: with glibc's defaults
(what a Python user gets) and with the shim's settings through glibc's
environment variables (MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_), which is the
like-for-like comparison; the ratio column is against that one.  Both sides
set torch's intra-op threads and OpenBLAS's own pool (which
torch.set_num_threads leaves alone) to --threads, inter-op threads to 1, and
report which library serves sgemm_.

The computations (bench_ml_parity.c has the settings):
  lm-step       GPT-2 124M next-token loss, backward, gradient clipping, Adam
  sft-step      the world policy's SFT step (sf-train's batch)
  ppo-step      the demo's PPO step of that policy (TRL's classic step); the
                shim on the learner's path (fused vocabulary head, packed
                positions), PyTorch as TRL writes it: an algorithm's gain
  ppo-step-ref  the same, the shim on its straightforward path: like for like
  convnext-step, vit-step
                ConvNeXt-Atto / ViT-Tiny fine-tuning step, AdamW, label smoothing
  gpt2-sample   GPT-2 124M KV-cache sampling
  clip-image, clip-text
                CLIP embeddings
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# sf_ml_init's mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, 1 << 30).
SHIM_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


# ---------------------------------------------------------------------------
# The PyTorch side (runs in a worker process: --worker SPECS)
# ---------------------------------------------------------------------------

def pytorch_side(args):
    """Times every workload of the specs file; one JSON line each."""
    import ctypes
    import math
    import resource
    import time

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    # Threads as sf_ml_init sets them: inter-op 1 (before any parallel work),
    # intra-op N, and OpenBLAS's pool N.
    torch.set_num_interop_threads(1)
    torch.set_num_threads(args.threads)
    torch_cpu = next(p for p in loaded_libraries() if "libtorch_cpu.so" in p)
    lib = ctypes.CDLL(torch_cpu)          # already loaded: its handle, whose
    try:                                   # dlsym searches its dependencies
        lib.openblas_set_num_threads(ctypes.c_int(args.threads))
        blas_threads = lib.openblas_get_num_threads()
    except AttributeError:
        blas_threads = None
    blas = library_of(lib, "sgemm_")

    # ---- GPT-2 with a value head (ml/gpt2_internal.hpp, ml/gpt2.cpp) ----

    class Conv1D(nn.Module):
        """HF's Conv1D: x @ weight + bias, weight (in, out)."""

        def __init__(self, nin, nout):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(nin, nout))
            self.bias = nn.Parameter(torch.zeros(nout))

        def forward(self, x):
            shape = x.shape[:-1] + (self.weight.shape[1],)
            return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)

    class Attn(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.n_head, self.n_embd = H, C
            self.c_attn = Conv1D(C, 3 * C)
            self.c_proj = Conv1D(C, C)

        def forward(self, x, bias, kv=None, off=0):
            B, T, C = x.shape
            H, D = self.n_head, C // self.n_head
            q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in self.c_attn(x).split(C, -1))
            if kv is not None:    # preallocated (B, H, Tmax, D) keys and values
                kv[0][:, :, off:off + T].copy_(k)
                kv[1][:, :, off:off + T].copy_(v)
                k, v = kv[0][:, :, :off + T], kv[1][:, :, :off + T]
            att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            att = torch.softmax(att + bias, -1)
            return self.c_proj(torch.matmul(att, v).transpose(1, 2).reshape(B, T, C))

    class MLP(nn.Module):
        def __init__(self, C):
            super().__init__()
            self.c_fc = Conv1D(C, 4 * C)
            self.c_proj = Conv1D(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self, C, H, eps):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=eps)
            self.attn = Attn(C, H)
            self.ln_2 = nn.LayerNorm(C, eps=eps)
            self.mlp = MLP(C)

        def forward(self, x, bias, kv=None, off=0):
            x = x + self.attn(self.ln_1(x), bias, kv, off)
            return x + self.mlp(self.ln_2(x))

    class ValueHead(nn.Module):
        def __init__(self, C):
            super().__init__()
            self.summary = nn.Linear(C, 1)

        def forward(self, h):
            return self.summary(h).squeeze(-1)

    class GPT2(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.cfg = c
            C = c["n_embd"]
            self.wte = nn.Embedding(c["vocab_size"], C)
            self.wpe = nn.Embedding(c["n_ctx"], C)
            self.h = nn.ModuleList(Block(C, c["n_head"], c["ln_eps"]) for _ in range(c["n_layer"]))
            self.ln_f = nn.LayerNorm(C, eps=c["ln_eps"])
            self.v_head = ValueHead(C)
            # HF's _init_weights, as GPT2Impl::init_weights.
            resid = 0.02 / math.sqrt(2 * c["n_layer"])
            with torch.no_grad():
                for n, p in self.named_parameters():
                    if "ln_" in n:
                        p.fill_(0.0 if n.endswith(".bias") else 1.0)
                    elif n.endswith(".bias"):
                        p.zero_()
                    else:
                        p.normal_(0.0, resid if "c_proj.weight" in n else 0.02)

        def hidden(self, tokens, pos, bias, cache=None, off=0):
            x = self.wte(tokens) + self.wpe(pos)
            for i, blk in enumerate(self.h):
                x = blk(x, bias, cache[i] if cache is not None else None, off)
            return self.ln_f(x)

        def logits(self, hid):     # tied lm_head
            return torch.matmul(hid, self.wte.weight.t())

    def attn_bias(kmask, q0, Tq):
        """(B, 1, Tq, Tk): 0 where key j is real and j <= query slot, else -1e9."""
        B, Tk = kmask.shape
        qi = torch.arange(q0, q0 + Tq).view(Tq, 1)
        kj = torch.arange(0, Tk).view(1, Tk)
        allowed = (kj <= qi).unsqueeze(0) & kmask.view(B, 1, Tk)
        bias = torch.zeros(allowed.shape)
        bias.masked_fill_(allowed.logical_not(), -1e9)
        return bias.unsqueeze(1)

    class QR:
        """A batch laid out as the shim lays query + response rows out:
        query left-padded to Q, response right-padded to R."""

    def padded(q, tokens, mask):
        q.tokens, q.mask = tokens, mask
        q.pos = (mask.long().cumsum(1) - 1).clamp_min(0)
        q.bias = attn_bias(mask, 0, tokens.shape[1])
        return q

    def build_qr(queries, responses):
        """queries, responses: lists of id lists."""
        n = len(queries)
        Q, R = max(map(len, queries)), max(map(len, responses))
        tok = torch.zeros(n, Q + R, dtype=torch.long)
        msk = torch.zeros(n, Q + R, dtype=torch.bool)
        for i, (qi, ri) in enumerate(zip(queries, responses)):
            tok[i, Q - len(qi):Q] = torch.tensor(qi)
            msk[i, Q - len(qi):Q] = True
            tok[i, Q:Q + len(ri)] = torch.tensor(ri)
            msk[i, Q:Q + len(ri)] = True
        q = padded(QR(), tok, msk)
        q.Q, q.R = Q, R
        q.resp = q.tokens[:, Q:Q + R]
        q.rmask = q.mask[:, Q:Q + R].float()
        return q

    def qr_rows(q, rows):
        s = QR()
        s.Q, s.R = q.Q, q.R
        for k in ("tokens", "mask", "pos", "bias", "resp", "rmask"):
            setattr(s, k, getattr(q, k).index_select(0, rows))
        return s

    def qr_forward(g, q, values=False, entropy=False):
        """Log-probs (B, R) of the response tokens, the vocabulary projection
        on real tokens only; optionally values and (no grad) entropies."""
        hid = g.hidden(q.tokens, q.pos, q.bias)[:, q.Q - 1:q.Q - 1 + q.R]
        B, R, C = hid.shape
        keep = q.rmask.reshape(B * R).nonzero().squeeze(1)
        logp = F.log_softmax(g.logits(hid.reshape(B * R, C).index_select(0, keep)), -1)
        lpk = logp.gather(1, q.resp.reshape(B * R).index_select(0, keep).unsqueeze(1)).squeeze(1)
        lp = torch.zeros(B * R).index_copy(0, keep, lpk).reshape(B, R)
        v = g.v_head(hid) if values else None
        ent = None
        if entropy:
            with torch.no_grad():
                lpd = logp.detach()
                e = -(lpd.exp() * lpd).sum(-1)
                ent = torch.zeros(B * R).index_copy(0, keep, e).reshape(B, R)
        return lp, v, ent

    def masked_mean(x, mask):
        return (x * mask).sum() / mask.sum()

    def masked_whiten(x, mask, shift_mean):
        mean = masked_mean(x, mask)
        centred = x - mean
        n = mask.sum()
        var = masked_mean(centred * centred, mask) * n / (n - 1)
        w = (x - mean) * torch.rsqrt(var + 1e-8)
        return w if shift_mean else w + mean

    def rows_of(spec):
        """Prompt and response id lists of an SFT spec, random ids."""
        g = torch.Generator().manual_seed(7)
        V, eos = spec["config"]["vocab_size"], spec["config"]["eos_id"]
        prompts, resps = [], []
        for p, s in zip(spec["prompt_lens"], spec["seq_lens"]):
            ids = torch.randint(0, V - 1, (s,), generator=g).tolist()
            if p == 1:
                ids[0] = eos       # plain text starts with end-of-text
            prompts.append(ids[:p])
            resps.append(ids[p:])
        return prompts, resps

    def sft_workload(spec):
        torch.manual_seed(1)
        model = GPT2(spec["config"])
        opt = torch.optim.Adam(model.parameters(), lr=spec["lr"])
        prompts, resps = rows_of(spec)
        clip = spec["max_grad_norm"]

        def step():
            q = build_qr(prompts, resps)
            lp, _, _ = qr_forward(model, q)
            loss = -masked_mean(lp, q.rmask)
            opt.zero_grad()
            loss.backward()
            if clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            return {"loss": loss.item()}

        return None, step

    # ---- sampling (ml/sample.cpp) ----

    @torch.no_grad()
    def sample(g, prompts, new, gen):
        """prompts (B, P) ids, all real -> tokens, log-probs, values (B, new).
        KV cache preallocated; inverse-CDF draws over the ids in order."""
        c = g.cfg
        B, P = prompts.shape
        Tmax, H, D = P + new, c["n_head"], c["n_embd"] // c["n_head"]
        seq = torch.full((B, Tmax), c["eos_id"], dtype=torch.long)
        seq[:, :P] = prompts
        msk = torch.zeros(B, Tmax, dtype=torch.bool)
        msk[:, :P] = True
        pos = (msk.long().cumsum(1) - 1).clamp_min(0)
        cache = [(torch.empty(B, H, Tmax, D), torch.empty(B, H, Tmax, D)) for _ in range(c["n_layer"])]
        toks, lps, vals = [], [], []
        for step in range(new):
            cur = P + step
            q0 = 0 if step == 0 else cur - 1
            bias = attn_bias(msk[:, :cur], q0, cur - q0)
            hid = g.hidden(seq[:, q0:cur], pos[:, q0:cur], bias, cache, q0)[:, -1]
            logp = F.log_softmax(g.logits(hid), -1)
            probs = logp.exp()
            v = g.v_head(hid)
            cdf = probs.cumsum(-1, dtype=torch.float64)
            u = torch.rand(B, 1, generator=gen, dtype=torch.float64)
            tok = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_max(c["vocab_size"] - 1)
            toks.append(tok.squeeze(1))
            lps.append(logp.gather(1, tok).squeeze(1))
            vals.append(v)
            seq[:, cur] = tok.squeeze(1)
            msk[:, cur] = True
            pos[:, cur] = pos[:, cur - 1] + 1
        return torch.stack(toks, 1), torch.stack(lps, 1), torch.stack(vals, 1)

    def sample_workload(spec):
        torch.manual_seed(1)
        model = GPT2(spec["config"]).eval()
        gen = torch.Generator().manual_seed(5)
        prompts = torch.randint(0, spec["config"]["vocab_size"] - 1, (spec["B"], spec["prompt"]), generator=gen)

        def step():
            t, _, _ = sample(model, prompts, spec["new"], gen)
            return {"tokens": t.numel()}

        return None, step

    # ---- the PPO step (ml/ppo.cpp), on the demo's path ----

    def ppo_workload(spec):
        c = spec["ppo"]
        torch.manual_seed(1)
        policy = GPT2(spec["config"])
        ref = GPT2(spec["config"])
        ref.load_state_dict(policy.state_dict())     # TRL's create_reference_model
        ref.requires_grad_(False)
        opt = torch.optim.Adam(policy.parameters(), lr=c["learning_rate"])
        gen = torch.Generator().manual_seed(11)
        V, n = spec["config"]["vocab_size"], spec["n"]
        qlens, rlens, group = spec["query_lens"], spec["response_lens"], spec["query_group"]
        prompts = {}
        queries = [prompts.setdefault(group[i], torch.randint(0, V - 1, (qlens[i],), generator=gen).tolist())
                   for i in range(n)]
        raw = torch.tensor([((i * 7) % 5) * 0.25 - 0.5 for i in range(n)])
        state = {"kl_coef": c["init_kl_coef"], "steps": 0, "rollouts": None}

        def prep():
            # Fresh rollouts from the current policy, one sampler call per
            # prompt length (the shim's sampler left-pads mixed lengths).
            R = spec["max_new"]
            tok, lp, val = torch.zeros(n, R, dtype=torch.long), torch.zeros(n, R), torch.zeros(n, R)
            for L in sorted(set(qlens)):
                rows = [i for i in range(n) if qlens[i] == L]
                t, l, v = sample(policy, torch.tensor([queries[i] for i in rows]), R, gen)
                tok[rows], lp[rows], val[rows] = t, l, v
            state["rollouts"] = (tok, lp, val)

        def baseline():
            """Leave-one-out mean score of each rollout's prompt group."""
            s = raw.tolist()
            out = []
            for i in range(n):
                same = [j for j in range(n) if j != i and queries[j] == queries[i]]
                others = same or [j for j in range(n) if j != i]
                out.append(sum(s[j] for j in others) / len(others) if others else 0.0)
            return torch.tensor(out)

        def gae(values, rewards, mask):
            values, rewards = values * mask, rewards * mask
            T = values.shape[1]
            last, rev = torch.zeros(values.shape[0]), []
            for t in reversed(range(T)):
                nxt = values[:, t + 1] if t < T - 1 else torch.zeros_like(last)
                delta = rewards[:, t] + c["gamma"] * nxt - values[:, t]
                last = delta + c["gamma"] * c["lam"] * last
                rev.append(last)
            adv = torch.stack(rev[::-1], 1)
            return adv, adv + values

        def loss_of(old_lp, lp, old_v, vpred, adv, returns, mask):
            """TRL's PPOTrainer.loss."""
            vclipped = torch.max(torch.min(vpred, old_v + c["cliprange_value"]), old_v - c["cliprange_value"])
            vf1, vf2 = (vpred - returns) ** 2, (vclipped - returns) ** 2
            vf_loss = 0.5 * masked_mean(torch.max(vf1, vf2), mask)
            ratio = torch.exp(lp - old_lp)
            pg1 = -adv * ratio
            pg2 = -adv * torch.clamp(ratio, 1.0 - c["cliprange"], 1.0 + c["cliprange"])
            pg_loss = masked_mean(torch.max(pg1, pg2), mask)
            loss = pg_loss + c["vf_coef"] * vf_loss
            with torch.no_grad():
                d = lp - old_lp
                st = {
                    "vf_clipfrac": masked_mean(torch.gt(vf2, vf1).float(), mask).item(),
                    "clipfrac": masked_mean(torch.gt(pg2, pg1).float(), mask).item(),
                    "approxkl": (0.5 * masked_mean(d * d, mask)).item(),
                    "policykl": masked_mean(-d, mask).item(),
                    "ratio_mean": masked_mean(ratio, mask).item(),
                    "pg_loss": pg_loss.item(),
                    "vf_loss": vf_loss.item(),
                }
            return loss, st

        def step():
            tok, lp_roll, v_roll = state["rollouts"]
            q = build_qr(queries, [tok[i, :rlens[i]].tolist() for i in range(n)])
            mask = q.rmask
            # 1. reference log-probs (no grad, 16 rows a forward); old
            #    log-probs and values are the rollouts' own.
            with torch.no_grad():
                ref_lp = torch.cat([qr_forward(ref, qr_rows(q, torch.arange(i, min(n, i + 16))))[0]
                                    for i in range(0, n, 16)])
                old_lp = lp_roll[:, :q.R] * mask
                old_v = v_roll[:, :q.R] * mask
            # 2-3. rewards, advantages, returns
            scores = raw - baseline()
            with torch.no_grad():
                rewards = -state["kl_coef"] * (old_lp - ref_lp) * mask
                last = (q.R - 1) - mask.flip(1).argmax(1)
                rewards.scatter_add_(1, last.unsqueeze(1), scores.unsqueeze(1))
                adv, returns = gae(old_v, rewards, mask)
                masked_mean(adv, mask).item()
                adv = masked_whiten(adv, mask, True)
            # 4. epochs of shuffled mini-batches
            g = torch.Generator().manual_seed(state["steps"])
            acc = {}
            minibatches = skipped = 0
            for _ in range(c["ppo_epochs"]):
                perm = torch.randperm(n, generator=g)
                for i0 in range(0, n, c["mini_batch_size"]):
                    rows = perm[i0:i0 + c["mini_batch_size"]]
                    sub = qr_rows(q, rows)
                    lp, vpred, ent = qr_forward(policy, sub, values=True, entropy=True)
                    loss, st = loss_of(old_lp.index_select(0, rows), lp, old_v.index_select(0, rows), vpred,
                                       adv.index_select(0, rows), returns.index_select(0, rows), sub.rmask)
                    st["total_loss"] = loss.item()
                    st["entropy"] = masked_mean(ent.detach(), sub.rmask).item()
                    for k, v in st.items():
                        acc[k] = acc.get(k, 0.0) + v
                    if st["ratio_mean"] > c["ratio_threshold"]:
                        skipped += 1
                        continue
                    opt.zero_grad()
                    loss.backward()
                    if c["max_grad_norm"] > 0:
                        nn.utils.clip_grad_norm_(policy.parameters(), c["max_grad_norm"])
                    opt.step()
                    minibatches += 1
            opt.zero_grad()
            # 5. statistics and the adaptive KL controller
            with torch.no_grad():
                kl = ((old_lp - ref_lp) * mask).sum(1).mean().item()
                (-old_lp * mask).sum(1).mean().item()
                raw.mean().item()
                masked_mean(returns, mask).item()
                masked_mean(old_v, mask).item()
            if c["adap_kl_ctrl"]:
                err = min(0.2, max(-0.2, kl / c["target"] - 1.0))
                state["kl_coef"] *= 1.0 + err * n / c["horizon"]
            state["steps"] += 1
            return {"minibatches": minibatches, "skipped": skipped,
                    "ratio_mean": acc["ratio_mean"] / (minibatches + skipped)}

        return prep, step

    # ---- classifiers (ml/classifier.cpp) ----

    class LayerNorm2d(nn.Module):
        def __init__(self, C, eps):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(C))
            self.bias = nn.Parameter(torch.zeros(C))

        def forward(self, x):
            y = F.layer_norm(x.permute(0, 2, 3, 1), (self.weight.shape[0],), self.weight, self.bias, self.eps)
            return y.permute(0, 3, 1, 2)

    class Pointwise(nn.Module):
        """A channels-last linear layer stored as timm's 1x1 conv (or Linear)."""

        def __init__(self, nin, nout, conv):
            super().__init__()
            self.nin, self.nout = nin, nout
            self.weight = nn.Parameter(torch.empty((nout, nin, 1, 1) if conv else (nout, nin)))
            self.bias = nn.Parameter(torch.zeros(nout))

        def forward(self, x):
            return F.linear(x, self.weight.view(self.nout, self.nin), self.bias)

    class CnMlp(nn.Module):
        def __init__(self, C, conv):
            super().__init__()
            self.fc1 = Pointwise(C, 4 * C, conv)
            self.fc2 = Pointwise(4 * C, C, conv)

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x)))

    class CnBlock(nn.Module):
        def __init__(self, C, conv, ls, eps):
            super().__init__()
            self.conv_dw = nn.Conv2d(C, C, 7, padding=3, groups=C)
            self.norm = nn.LayerNorm(C, eps=eps)
            self.mlp = CnMlp(C, conv)
            self.gamma = nn.Parameter(torch.full((C,), ls))

        def forward(self, x):
            y = self.conv_dw(x).permute(0, 2, 3, 1)
            y = self.mlp(self.norm(y)) * self.gamma
            return x + y.permute(0, 3, 1, 2)

    class CnStage(nn.Module):
        def __init__(self, nin, nout, depth, down, conv, ls, eps):
            super().__init__()
            self.downsample = nn.Sequential(LayerNorm2d(nin, eps), nn.Conv2d(nin, nout, 2, stride=2)) if down else None
            self.blocks = nn.Sequential(*[CnBlock(nout, conv, ls, eps) for _ in range(depth)])

        def forward(self, x):
            if self.downsample is not None:
                x = self.downsample(x)
            return self.blocks(x)

    class CnHead(nn.Module):
        def __init__(self, C, n, eps):
            super().__init__()
            self.norm = LayerNorm2d(C, eps)
            self.fc = nn.Linear(C, n)

        def forward(self, x):
            return self.fc(self.norm(x.mean((2, 3), keepdim=True)).flatten(1))

    class ConvNeXt(nn.Module):
        def __init__(self, c):
            super().__init__()
            d, eps = c["dims"], c["ln_eps"]
            p = c["stem_patch"]
            self.stem = nn.Sequential(nn.Conv2d(3, d[0], p, stride=p), LayerNorm2d(d[0], eps))
            self.stages = nn.Sequential(*[CnStage(d[i - 1] if i else d[0], d[i], c["depths"][i], i > 0,
                                                  bool(c["conv_mlp"]), c["ls_init"], eps) for i in range(len(d))])
            self.head = CnHead(d[-1], c["n_classes"], eps)

        def forward(self, px):
            return self.head(self.stages(self.stem(px)))

    def attention(q, k, v, H, mask=None):
        """sf_vision_attention: (B, T, C) each -> (B, T, C)."""
        B, T, C = q.shape
        D = C // H
        qh, kh, vh = (t.view(B, T, H, D).transpose(1, 2) for t in (q, k, v))
        att = torch.matmul(qh, kh.transpose(-2, -1)) * (1.0 / math.sqrt(D))
        if mask is not None:
            att = att + mask
        att = torch.softmax(att, -1)
        return torch.matmul(att, vh).transpose(1, 2).reshape(B, T, C)

    class VitAttn(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.heads = H
            self.qkv = nn.Linear(C, 3 * C)
            self.proj = nn.Linear(C, C)

        def forward(self, x):
            q, k, v = self.qkv(x).chunk(3, -1)
            return self.proj(attention(q, k, v, self.heads))

    class VitMlp(nn.Module):
        def __init__(self, C, M):
            super().__init__()
            self.fc1 = nn.Linear(C, M)
            self.fc2 = nn.Linear(M, C)

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x)))

    class VitBlock(nn.Module):
        def __init__(self, C, H, M, eps):
            super().__init__()
            self.norm1 = nn.LayerNorm(C, eps=eps)
            self.attn = VitAttn(C, H)
            self.norm2 = nn.LayerNorm(C, eps=eps)
            self.mlp = VitMlp(C, M)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class ViT(nn.Module):
        def __init__(self, c):
            super().__init__()
            C, P = c["width"], c["patch_size"]
            n = (c["image_size"] // P) ** 2
            self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
            self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, C))
            self.patch_embed = nn.Module()
            self.patch_embed.proj = nn.Conv2d(3, C, P, stride=P)
            self.blocks = nn.Sequential(*[VitBlock(C, c["heads"], C * c["mlp_ratio"], c["ln_eps"])
                                          for _ in range(c["depth"])])
            self.norm = nn.LayerNorm(C, eps=c["ln_eps"])
            self.head = nn.Linear(C, c["n_classes"])

        def forward(self, px):
            x = self.patch_embed.proj(px).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(px.shape[0], 1, x.shape[2]), x], 1) + self.pos_embed
            return self.head(self.norm(self.blocks(x))[:, 0])

    def vision_init(m):
        """sf_vision_init: zero biases, unit norms, N(0, 0.02) for the rest."""
        with torch.no_grad():
            for n, p in m.named_parameters():
                if n.endswith(".bias"):
                    p.zero_()
                elif "norm" in n or "layrnorm" in n:
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 0.02)

    def cls_workload(spec):
        c = spec["config"]
        torch.manual_seed(1)
        model = ConvNeXt(c) if c["arch"] == "convnext" else ViT(c)
        vision_init(model)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("gamma"):
                    p.fill_(c["ls_init"])
        # AdamW in two groups: decay on matrices (dim >= 2), none on the rest.
        params = list(model.parameters())
        opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": spec["weight_decay"]},
                                 {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=spec["lr"])
        B, S = spec["B"], c["image_size"]
        px = torch.rand(B, 3, S, S) * 4 - 2
        y = torch.randint(0, c["n_classes"], (B,))

        def step():
            model.train()
            loss = F.cross_entropy(model(px), y, label_smoothing=spec["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            return {"loss": loss.item()}

        return None, step

    # ---- CLIP (ml/clip.cpp) ----

    class ClipAttn(nn.Module):
        def __init__(self, C, H):
            super().__init__()
            self.heads = H
            self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(C, C) for _ in range(4))

        def forward(self, x, mask):
            return self.out_proj(attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, mask))

    class ClipMLP(nn.Module):
        def __init__(self, C, M, quick):
            super().__init__()
            self.quick = quick
            self.fc1 = nn.Linear(C, M)
            self.fc2 = nn.Linear(M, C)

        def forward(self, x):
            h = self.fc1(x)
            return self.fc2(h * torch.sigmoid(1.702 * h) if self.quick else F.gelu(h))

    class ClipLayer(nn.Module):
        def __init__(self, C, H, M, eps, quick):
            super().__init__()
            self.self_attn = ClipAttn(C, H)
            self.layer_norm1 = nn.LayerNorm(C, eps=eps)
            self.mlp = ClipMLP(C, M, quick)
            self.layer_norm2 = nn.LayerNorm(C, eps=eps)

        def forward(self, x, mask):
            x = x + self.self_attn(self.layer_norm1(x), mask)
            return x + self.mlp(self.layer_norm2(x))

    class ClipEncoder(nn.Module):
        def __init__(self, n, C, H, M, eps, quick):
            super().__init__()
            self.layers = nn.ModuleList(ClipLayer(C, H, M, eps, quick) for _ in range(n))

        def forward(self, x, mask=None):
            for layer in self.layers:
                x = layer(x, mask)
            return x

    class CLIP(nn.Module):
        def __init__(self, c):
            super().__init__()
            eps, q = c["ln_eps"], bool(c["quick_gelu"])
            Cv, Ct, P = c["vision_width"], c["text_width"], c["patch_size"]
            self.text_model = nn.Module()
            self.text_model.embeddings = nn.Module()
            self.text_model.embeddings.token_embedding = nn.Embedding(c["vocab_size"], Ct)
            self.text_model.embeddings.position_embedding = nn.Embedding(c["context_length"], Ct)
            self.text_model.encoder = ClipEncoder(c["text_layers"], Ct, c["text_heads"], c["text_mlp"], eps, q)
            self.text_model.final_layer_norm = nn.LayerNorm(Ct, eps=eps)
            vm = self.vision_model = nn.Module()
            vm.embeddings = nn.Module()
            vm.embeddings.class_embedding = nn.Parameter(torch.empty(Cv))
            vm.embeddings.patch_embedding = nn.Conv2d(3, Cv, P, stride=P, bias=False)
            vm.embeddings.position_embedding = nn.Embedding((c["image_size"] // P) ** 2 + 1, Cv)
            vm.pre_layrnorm = nn.LayerNorm(Cv, eps=eps)
            vm.encoder = ClipEncoder(c["vision_layers"], Cv, c["vision_heads"], c["vision_mlp"], eps, q)
            vm.post_layernorm = nn.LayerNorm(Cv, eps=eps)
            self.visual_projection = nn.Linear(Cv, c["embed_dim"], bias=False)
            self.text_projection = nn.Linear(Ct, c["embed_dim"], bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(50.0)))
            vision_init(self)

        @staticmethod
        def unit(x):
            return x / x.norm(2, -1, True).clamp_min(1e-12).expand_as(x)

        def image(self, px):
            vm, B = self.vision_model, px.shape[0]
            x = vm.embeddings.patch_embedding(px).flatten(2).transpose(1, 2)
            cls = vm.embeddings.class_embedding.view(1, 1, -1).expand(B, 1, x.shape[2])
            x = torch.cat([cls, x], 1) + vm.embeddings.position_embedding.weight.unsqueeze(0)
            x = vm.encoder(vm.pre_layrnorm(x))
            return self.unit(self.visual_projection(vm.post_layernorm(x[:, 0])))

        def text(self, tokens, eot):
            tm, (B, T) = self.text_model, tokens.shape
            x = tm.embeddings.token_embedding(tokens) + tm.embeddings.position_embedding.weight[:T].unsqueeze(0)
            mask = torch.full((T, T), -1e9).triu(1)
            x = tm.final_layer_norm(tm.encoder(x, mask))
            return self.unit(self.text_projection(x[torch.arange(B), eot]))

    def clip_workload(spec):
        c = spec["config"]
        torch.manual_seed(1)
        model = CLIP(c).eval()
        B = spec["B"]
        if spec["kind"] == "clip_image":
            px = torch.rand(B, 3, c["image_size"], c["image_size"]) * 4 - 2

            def run():
                return model.image(px)
        else:
            T = spec["T"]
            tokens = torch.zeros(B, T, dtype=torch.long)
            for i, e in enumerate(spec["eot_pos"]):
                tokens[i, 0] = c["eot_id"] - 1
                tokens[i, 1:e] = torch.randint(0, c["vocab_size"] - 2, (e - 1,))
                tokens[i, e] = c["eot_id"]

            def run():
                eot = (tokens == c["eot_id"]).int().argmax(-1)   # the first end token
                return model.text(tokens, eot)

        def step():
            with torch.no_grad():
                e = run()
            return {"norm0": float((e[0] * e[0]).sum())}

        return None, step

    kinds = {"sft_step": sft_workload, "ppo_step": ppo_workload, "cls_step": cls_workload,
             "sample": sample_workload, "clip_image": clip_workload, "clip_text": clip_workload}

    print(json.dumps({"side": "pytorch", "threads": args.threads, "reps": args.reps, "blas": blas,
                      "blas_threads": blas_threads, "torch": torch.__version__,
                      "malloc": "shim" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "default"}), flush=True)
    with open(args.worker) as f:
        specs = [json.loads(line) for line in f]
    for rec in specs:
        prep, step = kinds[rec["spec"]["kind"]](rec["spec"])
        if prep:
            prep()
        check = step()
        times, cpu, faults = [], [], []
        for _ in range(args.reps):
            if prep:
                prep()
            t0, c0, f0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            check = step()
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
            cpu.append(time.process_time() - c0)
            times.append(time.perf_counter() - t0)
        print(json.dumps({"name": rec["name"], "best_s": min(times), "best_cpu_s": min(cpu), "times_s": times,
                          "cpu_s": cpu, "minor_faults": faults, "check": check}), flush=True)
        del prep, step


def loaded_libraries():
    """Paths of the shared objects mapped into this process."""
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if ".so" in line and "/" in line})


def library_of(lib, symbol):
    """The real path of the library that serves `symbol` to lib (dladdr)."""
    import ctypes

    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]

    try:
        addr = ctypes.cast(getattr(lib, symbol), ctypes.c_void_p)
    except AttributeError:
        return "unknown"
    info = DlInfo()
    if not ctypes.CDLL(None).dladdr(addr, ctypes.byref(info)) or not info.dli_fname:
        return "unknown"
    return os.path.realpath(info.dli_fname.decode())


# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------

def run_lines(cmd, env=None):
    """Runs cmd, stderr passed through; its stdout's JSON lines."""
    out = subprocess.run(cmd, stdout=subprocess.PIPE, env=env, check=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def shim_bench():
    b = os.path.join(ROOT, os.environ.get("SF_BUILD", "build"), "bench", "bench_ml_parity")
    if not os.access(b, os.X_OK):
        sys.exit("bench_parity: %s not built (make build)" % b)
    return b


def shim_side(args, name, malloc_default):
    cmd = [shim_bench(), "--json", "--threads", str(args.threads), "--reps", str(args.reps),
           "--models", os.path.join(ROOT, "models"), "--only", name]
    if args.small:
        cmd.append("--small")
    if malloc_default:
        cmd.append("--malloc-default")
    head, rec = run_lines(cmd)
    return head, rec


def torch_side(args, rec, shim_malloc):
    env = dict(os.environ)
    for k in SHIM_MALLOC_ENV:
        env.pop(k, None)
    if shim_malloc:
        env.update(SHIM_MALLOC_ENV)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        cmd = [args.python, os.path.abspath(__file__), "--worker", f.name, "--threads", str(args.threads),
               "--reps", str(args.reps)]
        head, row = run_lines(cmd, env)
    return head, row


def merge(into, rec):
    """Adds a run's repetitions to those of earlier rounds."""
    if into is None:
        return dict(rec)
    out = dict(into)
    out["times_s"] = into["times_s"] + rec["times_s"]
    out["cpu_s"] = into["cpu_s"] + rec["cpu_s"]
    out["minor_faults"] = into["minor_faults"] + rec["minor_faults"]
    out["best_s"], out["best_cpu_s"] = min(out["times_s"]), min(out["cpu_s"])
    out["check"] = rec["check"]
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description="The shim against eager PyTorch (same computations, same threads).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions after the warm-up (best counts)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="times to repeat the interleaved measurement of every workload (best over all)")
    ap.add_argument("--small", action="store_true", help="small shapes: a quick run")
    ap.add_argument("--only", help="comma-separated workload names (default: all)")
    ap.add_argument("--c-default-malloc", action="store_true",
                    help="also time the shim with glibc's malloc defaults (sf_ml_opts_t.malloc_default)")
    ap.add_argument("--json", help="write every measurement to this file")
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python with torch 1.13 (the worker's)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads < 1 or args.reps < 1 or args.rounds < 1:
        ap.error("--threads, --reps and --rounds must be >= 1")
    if args.worker:
        return pytorch_side(args)

    names = subprocess.run([shim_bench(), "--list"], stdout=subprocess.PIPE, check=True,
                           text=True).stdout.split()
    if args.only:
        unknown = set(args.only.split(",")) - set(names)
        if unknown:
            ap.error("unknown workload(s) %s; there are %s" % (", ".join(sorted(unknown)), ", ".join(names)))
        names = [n for n in names if n in args.only.split(",")]
    sides = ["shim", "pytorch_glibc", "pytorch_shim"] + (["shim_glibc"] if args.c_default_malloc else [])
    res = {s: {} for s in sides}
    heads = {}
    load0 = loadavg()
    # Each workload's sides run back to back, so that a busy neighbour's
    # load falls on all of them alike rather than on whichever ran last.
    for _ in range(args.rounds):
        for n in names:
            heads["shim"], rec = shim_side(args, n, False)
            res["shim"][n] = merge(res["shim"].get(n), rec)
            heads["pytorch_glibc"], row = torch_side(args, rec, False)
            res["pytorch_glibc"][n] = merge(res["pytorch_glibc"].get(n), row)
            heads["pytorch_shim"], row = torch_side(args, rec, True)
            res["pytorch_shim"][n] = merge(res["pytorch_shim"].get(n), row)
            if args.c_default_malloc:
                heads["shim_glibc"], row = shim_side(args, n, True)
                res["shim_glibc"][n] = merge(res["shim_glibc"].get(n), row)

    sh, pt = heads["shim"], heads["pytorch_glibc"]
    print("threads %d; best of %d (%d round%s of %d after a warm-up)%s; load average %s before, %s after"
          % (args.threads, args.reps * args.rounds, args.rounds, "s" if args.rounds > 1 else "", args.reps,
             "; small shapes" if args.small else "", load0, loadavg()))
    print("shim:    BLAS %s" % sh["blas"])
    print("PyTorch: BLAS %s, OpenBLAS threads %s, torch %s" % (pt["blas"], pt["blas_threads"], pt["torch"]))
    if pt["blas"] != sh["blas"]:
        print("WARNING: the two sides' sgemm_ comes from different libraries")
    print("malloc: 'shim' = sf_ml_init's M_MMAP_MAX 0 and M_TRIM_THRESHOLD 1 GiB (PyTorch: through %s);"
          " 'glibc' = the defaults" % " ".join("%s=%s" % kv for kv in SHIM_MALLOC_ENV.items()))
    print()
    cols = [("computation", ""), ("shape", ""), ("C shim s", "shim malloc")]
    if args.c_default_malloc:
        cols.append(("C shim s", "glibc malloc"))
    cols += [("PyTorch s", "glibc malloc"), ("PyTorch s", "shim malloc"), ("C/PyTorch", "same malloc"),
             ("C/PyTorch", "vs glibc"), ("C/PyTorch", "CPU time")]
    rows = []
    for n in names:
        c, pg, ps = res["shim"][n], res["pytorch_glibc"][n], res["pytorch_shim"][n]
        row = [n, c["shape"], "%.4f" % c["best_s"]]
        if args.c_default_malloc:
            row.append("%.4f" % res["shim_glibc"][n]["best_s"])
        row += ["%.4f" % pg["best_s"], "%.4f" % ps["best_s"], "%.3f" % (c["best_s"] / ps["best_s"]),
                "%.3f" % (c["best_s"] / pg["best_s"]), "%.3f" % (c["best_cpu_s"] / ps["best_cpu_s"])]
        rows.append(row)
    lines = [[h for h, _ in cols], [s for _, s in cols]] + rows
    widths = [max(len(x[i]) for x in lines) for i in range(len(cols))]
    for line in lines:
        print("  ".join(x.ljust(w) if i < 2 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths))))
    print()
    print("per step, best of the repetitions: process CPU seconds and minor page faults")
    cols = ["computation", "CPU s shim", "PyTorch glibc", "PyTorch shim", "faults shim", "PyTorch glibc",
            "PyTorch shim"]
    rows = [[n] + ["%.4f" % res[s][n]["best_cpu_s"] for s in sides[:3]] +
            ["%d" % min(res[s][n]["minor_faults"]) for s in sides[:3]] for n in names]
    widths = [max(len(x[i]) for x in [cols] + rows) for i in range(len(cols))]
    for line in [cols] + rows:
        print("  ".join(x.ljust(w) if i < 1 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths))))
    print()
    print("checks (the last step's values on each side, shim | PyTorch with the shim's malloc: the same work done):")
    for n in names:
        print("  %-14s %s | %s" % (n, json.dumps(res["shim"][n]["check"]), json.dumps(res["pytorch_shim"][n]["check"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "heads": heads, "results": res}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())

"""timm_folder.py: writes a classifier folder as timm publishes one on the HF
hub (config.json with pretrained_cfg, model.safetensors in timm's parameter
names), independently of the project's C++ writer: the names and shapes come
from timm's module layout of convnext_atto and vit_tiny_patch16_224, the
weights are random (torch, Debian's python3-torch), the file is written by
hand in the safetensors format.

    timm_folder.py OUT ARCH [--size S] [--classes N] [--drop NAME] [--seed K]

ARCH: convnext_atto or vit_tiny_patch16_224 (any other name is written as the
config's architecture with convnext_atto's tensors, for the loader to refuse);
--size sets pretrained_cfg's input_size (the ViT's position table follows);
--classes the head's rows (num_classes stays 1000 in the config, so that 999
disagrees); --drop leaves a tensor out.
"""
import argparse
import json
import os
import struct

import torch


def convnext_atto(n):
    dims, depths = [40, 80, 160, 320], [2, 2, 6, 2]
    t = [("stem.0.weight", (40, 3, 4, 4)), ("stem.0.bias", (40,)), ("stem.1.weight", (40,)), ("stem.1.bias", (40,))]
    for s, (d, depth) in enumerate(zip(dims, depths)):
        if s:
            p = dims[s - 1]
            t += [(f"stages.{s}.downsample.0.weight", (p,)), (f"stages.{s}.downsample.0.bias", (p,)),
                  (f"stages.{s}.downsample.1.weight", (d, p, 2, 2)), (f"stages.{s}.downsample.1.bias", (d,))]
        for b in range(depth):
            q = f"stages.{s}.blocks.{b}."
            # convnext_atto has conv_mlp=True: the MLP is two 1x1 convolutions.
            t += [(q + "gamma", (d,)), (q + "conv_dw.weight", (d, 1, 7, 7)), (q + "conv_dw.bias", (d,)),
                  (q + "norm.weight", (d,)), (q + "norm.bias", (d,)), (q + "mlp.fc1.weight", (4 * d, d, 1, 1)),
                  (q + "mlp.fc1.bias", (4 * d,)), (q + "mlp.fc2.weight", (d, 4 * d, 1, 1)), (q + "mlp.fc2.bias", (d,))]
    t += [("head.norm.weight", (320,)), ("head.norm.bias", (320,)), ("head.fc.weight", (n, 320)), ("head.fc.bias", (n,))]
    return t, 320, 0.95


def vit_tiny(n, size):
    w, tokens = 192, 1 + (size // 16) ** 2
    t = [("cls_token", (1, 1, w)), ("pos_embed", (1, tokens, w)), ("patch_embed.proj.weight", (w, 3, 16, 16)),
         ("patch_embed.proj.bias", (w,))]
    for i in range(12):
        q = f"blocks.{i}."
        t += [(q + "norm1.weight", (w,)), (q + "norm1.bias", (w,)), (q + "attn.qkv.weight", (3 * w, w)),
              (q + "attn.qkv.bias", (3 * w,)), (q + "attn.proj.weight", (w, w)), (q + "attn.proj.bias", (w,)),
              (q + "norm2.weight", (w,)), (q + "norm2.bias", (w,)), (q + "mlp.fc1.weight", (4 * w, w)),
              (q + "mlp.fc1.bias", (4 * w,)), (q + "mlp.fc2.weight", (w, 4 * w)), (q + "mlp.fc2.bias", (w,))]
    t += [("norm.weight", (w,)), ("norm.bias", (w,)), ("head.weight", (n, w)), ("head.bias", (n,))]
    return t, w, 0.9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("arch")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--drop", default="")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    if a.arch.startswith("vit_tiny"):
        tensors, feats, crop = vit_tiny(a.classes, a.size)
    else:
        tensors, feats, crop = convnext_atto(a.classes)
    os.makedirs(a.out, exist_ok=True)
    header, blobs, off = {}, [], 0
    for name, shape in tensors:
        if name == a.drop:
            continue
        if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "stem.1.weight", "downsample.0.weight")):
            x = torch.ones(shape) + 0.1 * torch.randn(shape)
        elif name.endswith("gamma"):
            x = torch.full(shape, 0.5)
        else:
            x = 0.05 * torch.randn(shape)
        b = x.to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    cfg = {"architecture": a.arch, "num_classes": 1000, "num_features": feats,
           "pretrained_cfg": {"tag": "test", "custom_load": False, "input_size": [3, a.size, a.size],
                              "fixed_input_size": a.arch.startswith("vit"), "interpolation": "bicubic",
                              "crop_pct": crop, "crop_mode": "center", "mean": [0.485, 0.456, 0.406],
                              "std": [0.229, 0.224, 0.225], "num_classes": 1000,
                              "first_conv": "patch_embed.proj" if a.arch.startswith("vit") else "stem.0",
                              "classifier": "head" if a.arch.startswith("vit") else "head.fc"}}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""classifiers.py: the numerics fixtures of the timm classifiers.

Regenerate every file it owns with one command, from the repository root:

    /usr/bin/python3 tools/numerics/classifiers.py

(Debian's python3 with python3-torch 1.13, python3-torchvision 0.14 and
python3-pil 9.4; the `python3` of a pyenv lacks them.)

ml/classifier.cpp implements timm's convnext_atto and vit_tiny_patch16_224
under timm's parameter names.  The reference here is independent of it and
of timm: torchvision's own ConvNeXt and VisionTransformer modules, configured
as those two models, loaded with the same deterministic weights
(tools/numerics/fill.py, keyed by the timm names; the C test makes them with
tests/unit/numerics_fill.h) after mapping each timm tensor onto torchvision's
parameter.  The input is a JPEG made here, preprocessed exactly as timm's
evaluation transform does it with torchvision's transforms on a PIL image:
Resize(floor(224 / crop_pct), BICUBIC) of the shorter side, CenterCrop(224),
ToTensor, Normalize(ImageNet mean, std).

Files written to tests/fixtures/numerics/ (tests/unit/test_ml_numerics_cls.c
reads them):
  image.jpg          300x240, PIL's encoder at quality 90
  image.json         the decoded image's size and FNV-1a 64 of its RGB bytes,
                     and FNV-1a 64 of PIL resizes of it to several sizes
                     (down, up, one axis only, bilinear and bicubic)
  <arch>.json        tensor list (timm name, shape, scale, offset), the
                     preprocessing's sizes, tolerance, expected logits, and
                     the one-weight perturbation the test must detect
  <arch>.crop.rgb    the 224x224x3 bytes after PIL's resize and the centre
                     crop, before ToTensor
"""
import json
import math
import os
import sys

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageDraw
from torchvision import transforms as T
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fill import fill  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "numerics")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# max|a - b| / max|b| over the 1000 logits.  The two fp32 implementations
# differ only in the order of their sums (measured ~1e-6); a wrong weight,
# norm or attention layout is orders of magnitude above.
TOL_REL = 1e-4


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---- the input ----

def make_jpeg(path):
    """Gradients, hard-edged shapes in saturated colours (bicubic overshoot
    must clip), thin lines and a checkerboard (aliasing), so that every part
    of the resampler shows in the result."""
    w, h = 300, 240
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)], -1)
    im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    d.ellipse((30, 40, 130, 140), fill=(250, 20, 10))
    d.rectangle((170, 30, 270, 90), fill=(0, 0, 0))
    d.rectangle((190, 45, 250, 75), fill=(255, 255, 255))
    d.polygon([(160, 220), (220, 120), (290, 220)], fill=(20, 200, 40))
    for i in range(0, 100, 6):
        d.line((10 + i, 160, 60 + i, 230), fill=(255, 255, 0), width=1)
    for cy in range(8):
        for cx in range(8):
            if (cx + cy) % 2 == 0:
                d.rectangle((120 + 3 * cx, 150 + 3 * cy, 122 + 3 * cx, 152 + 3 * cy), fill=(0, 0, 255))
    im.save(path, "JPEG", quality=90)


# ---- weights ----

def scale_matrix(fan_in):
    """Uniform in +-sqrt(3 / fan_in): standard deviation 1/sqrt(fan_in), so
    each layer keeps the scale of its input."""
    return math.sqrt(3.0 / fan_in)


# A LayerNorm's eps only shows where its input's variance is near eps
# (1e-6): with unit activations everywhere, eps 1e-5 for 1e-6 moves the
# logits by ~1e-5, under the tolerance.  So the layers before a few norms
# are "quiet": weights of standard deviation 1e-3/sqrt(fan_in), outputs of
# ~1e-3 (variance ~1e-6), and smaller biases (and ViT embeddings), so that
# the image still dominates what the first norm sees.  The norm scales them back to
# unit size, so nothing downstream changes character, but a wrong eps
# there changes its output by tens of percent.
QUIET = 1e-3
QUIET_BIAS = 1e-4


def scale_quiet(fan_in):
    return QUIET * scale_matrix(fan_in)


def spec(name, shape, scale, offset=0.0):
    return {"name": name, "shape": list(shape), "scale": scale, "offset": offset}


def norm_specs(prefix, c):
    return [spec(prefix + ".weight", (c,), 0.1, 1.0), spec(prefix + ".bias", (c,), 0.02)]


def convnext_atto_specs():
    """timm convnext_atto's state_dict (conv_mlp=True: 1x1 conv MLPs), in
    timm's order.  Layer scale gamma is 0.5 +- 0.1, not timm's 1e-6 init,
    so that every block changes the output."""
    depths, dims = (2, 2, 6, 2), (40, 80, 160, 320)
    # Quiet: the stem (so its LayerNorm2d's eps shows) and the depthwise
    # conv of each stage's first block (so the block LayerNorm's eps shows).
    s = [spec("stem.0.weight", (40, 3, 4, 4), scale_quiet(48)), spec("stem.0.bias", (40,), QUIET_BIAS)]
    s += norm_specs("stem.1", 40)
    for i, (n, d) in enumerate(zip(depths, dims)):
        p = "stages.%d" % i
        if i > 0:
            c = dims[i - 1]
            s += norm_specs(p + ".downsample.0", c)
            s += [spec(p + ".downsample.1.weight", (d, c, 2, 2), scale_matrix(4 * c)),
                  spec(p + ".downsample.1.bias", (d,), 0.02)]
        for b in range(n):
            q = "%s.blocks.%d" % (p, b)
            quiet = b == 0
            s += [spec(q + ".gamma", (d,), 0.1, 0.5),
                  spec(q + ".conv_dw.weight", (d, 1, 7, 7), scale_quiet(49) if quiet else scale_matrix(49)),
                  spec(q + ".conv_dw.bias", (d,), QUIET_BIAS if quiet else 0.02)]
            s += norm_specs(q + ".norm", d)
            s += [spec(q + ".mlp.fc1.weight", (4 * d, d, 1, 1), scale_matrix(d)),
                  spec(q + ".mlp.fc1.bias", (4 * d,), 0.02),
                  spec(q + ".mlp.fc2.weight", (d, 4 * d, 1, 1), scale_matrix(4 * d)),
                  spec(q + ".mlp.fc2.bias", (d,), 0.02)]
    s += norm_specs("head.norm", 320)
    s += [spec("head.fc.weight", (1000, 320), scale_matrix(320)), spec("head.fc.bias", (1000,), 0.02)]
    return s


def vit_tiny_specs():
    C, M, L = 192, 768, 12
    # Quiet: the embedding (so block 0's norm1 eps shows) and block 0's
    # attention projection (so its norm2 eps shows).
    s = [spec("cls_token", (1, 1, C), 0.5 * QUIET), spec("pos_embed", (1, 197, C), 0.5 * QUIET),
         spec("patch_embed.proj.weight", (C, 3, 16, 16), scale_quiet(768)),
         spec("patch_embed.proj.bias", (C,), QUIET_BIAS)]
    for i in range(L):
        p = "blocks.%d" % i
        s += norm_specs(p + ".norm1", C)
        s += [spec(p + ".attn.qkv.weight", (3 * C, C), scale_matrix(C)),
              spec(p + ".attn.qkv.bias", (3 * C,), 0.02),
              spec(p + ".attn.proj.weight", (C, C), scale_quiet(C) if i == 0 else scale_matrix(C)),
              spec(p + ".attn.proj.bias", (C,), QUIET_BIAS if i == 0 else 0.02)]
        s += norm_specs(p + ".norm2", C)
        s += [spec(p + ".mlp.fc1.weight", (M, C), scale_matrix(C)),
              spec(p + ".mlp.fc1.bias", (M,), 0.02),
              spec(p + ".mlp.fc2.weight", (C, M), scale_matrix(M)),
              spec(p + ".mlp.fc2.bias", (C,), 0.02)]
    s += norm_specs("norm", C)
    s += [spec("head.weight", (1000, C), scale_matrix(C)), spec("head.bias", (1000,), 0.02)]
    return s


def convnext_tv_name(n):
    """timm convnext name -> torchvision ConvNeXt name.  torchvision's
    `features` interleaves stages and downsamples: 0 stem, 1 stage 0,
    2 downsample into stage 1, 3 stage 1, ... 7 stage 3."""
    f = n.split(".")
    if f[0] == "stem":
        return "features.0.%s.%s" % (f[1], f[2])
    if f[0] == "head":
        return {"norm": "classifier.0", "fc": "classifier.2"}[f[1]] + "." + f[2]
    st = int(f[1])
    if f[2] == "downsample":
        return "features.%d.%s.%s" % (2 * st, f[3], f[4])
    blk = "features.%d.%s" % (2 * st + 1, f[3])
    rest = ".".join(f[4:])
    return blk + "." + {"gamma": "layer_scale", "conv_dw.weight": "block.0.weight",
                        "conv_dw.bias": "block.0.bias", "norm.weight": "block.2.weight",
                        "norm.bias": "block.2.bias", "mlp.fc1.weight": "block.3.weight",
                        "mlp.fc1.bias": "block.3.bias", "mlp.fc2.weight": "block.5.weight",
                        "mlp.fc2.bias": "block.5.bias"}[rest]


def vit_tv_name(n):
    top = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding",
           "patch_embed.proj.weight": "conv_proj.weight", "patch_embed.proj.bias": "conv_proj.bias",
           "norm.weight": "encoder.ln.weight", "norm.bias": "encoder.ln.bias",
           "head.weight": "heads.head.weight", "head.bias": "heads.head.bias"}
    if n in top:
        return top[n]
    f = n.split(".")
    rest = ".".join(f[2:])
    # timm's fused qkv rows are [q; k; v], as nn.MultiheadAttention's
    # in_proj_weight, so the fused tensor maps as it is.
    return "encoder.layers.encoder_layer_%s.%s" % (f[1], {
        "norm1.weight": "ln_1.weight", "norm1.bias": "ln_1.bias",
        "attn.qkv.weight": "self_attention.in_proj_weight",
        "attn.qkv.bias": "self_attention.in_proj_bias",
        "attn.proj.weight": "self_attention.out_proj.weight",
        "attn.proj.bias": "self_attention.out_proj.bias",
        "norm2.weight": "ln_2.weight", "norm2.bias": "ln_2.bias",
        "mlp.fc1.weight": "mlp.0.weight", "mlp.fc1.bias": "mlp.0.bias",
        "mlp.fc2.weight": "mlp.3.weight", "mlp.fc2.bias": "mlp.3.bias"}[rest])


def load_weights(model, specs, tv_name, perturb=None):
    """Fills every torchvision parameter from its timm tensor, reshaped where
    the layouts differ (1x1 conv (o, i, 1, 1) vs Linear (o, i); gamma (C,)
    vs layer_scale (C, 1, 1)); every parameter must be set exactly once."""
    params = dict(model.named_parameters())
    done = set()
    with torch.no_grad():
        for s in specs:
            w = fill(s["name"], s["shape"], s["scale"], s["offset"])
            if perturb and s["name"] == perturb["name"]:
                w.reshape(-1)[perturb["index"]] += np.float32(perturb["delta"])
            t = tv_name(s["name"])
            p = params[t]
            assert p.numel() == w.size, (s["name"], t, p.shape, w.shape)
            p.copy_(torch.from_numpy(w).reshape(p.shape))
            assert t not in done, t
            done.add(t)
    missing = set(params) - done
    assert not missing, missing


def build_convnext_atto():
    cfg = [CNBlockConfig(40, 80, 2), CNBlockConfig(80, 160, 2), CNBlockConfig(160, 320, 6),
           CNBlockConfig(320, None, 2)]
    m = ConvNeXt(cfg, stochastic_depth_prob=0.0, layer_scale=1.0, num_classes=1000)
    # timm's eps; torchvision's defaults are the same, checked rather than assumed.
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            assert mod.eps == 1e-6, mod
    return m


def build_vit_tiny():
    m = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192,
                          mlp_dim=768, num_classes=1000)
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            assert mod.eps == 1e-6, mod
    return m


ARCHS = {
    "convnext_atto": dict(specs=convnext_atto_specs, build=build_convnext_atto, tv_name=convnext_tv_name,
                          crop_pct=0.95,
                          # A depthwise 7x7 tap of stage 2's fourth block: channel 17, row 3, column 3.
                          perturb={"name": "stages.2.blocks.3.conv_dw.weight", "index": 17 * 49 + 3 * 7 + 3,
                                   "delta": 0.2}),
    "vit_tiny_patch16_224": dict(specs=vit_tiny_specs, build=build_vit_tiny, tv_name=vit_tv_name,
                                 crop_pct=0.9,
                                 # A value weight of block 7: qkv row 384 + 10 (v, channel 10), column 5.
                                 perturb={"name": "blocks.7.attn.qkv.weight", "index": (384 + 10) * 192 + 5,
                                          "delta": 0.125}),
}


def dump_lines(obj):
    """JSON with one top-level key a line and one tensor a line, so that a
    regenerated fixture diffs readably."""
    rows = []
    for k, v in obj.items():
        if k == "tensors":
            body = "[\n" + ",\n".join("  " + json.dumps(t) for t in v) + "\n ]"
        else:
            body = json.dumps(v)
        rows.append(" %s: %s" % (json.dumps(k), body))
    return "{\n" + ",\n".join(rows) + "\n}\n"


def rel_err(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    jpg = os.path.join(OUT, "image.jpg")
    make_jpeg(jpg)
    img = Image.open(jpg).convert("RGB")
    w, h = img.size

    # PIL's resampler on its own, on the decoded image.
    cases = []
    for ow, oh, f in [(224, 179, "bicubic"), (97, 61, "bicubic"), (64, 64, "bilinear"),
                      (411, 333, "bicubic"), (350, 100, "bilinear"), (300, 17, "bicubic"),
                      (13, 240, "bilinear"), (1, 1, "bicubic"), (293, 235, "bilinear")]:
        r = img.resize((ow, oh), {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[f])
        cases.append({"w": ow, "h": oh, "filter": f, "fnv1a64": fnv1a64(r.tobytes())})
    with open(os.path.join(OUT, "image.json"), "w") as fp:
        json.dump({"generator": "tools/numerics/classifiers.py", "pil": PIL.__version__,
                   "jpeg": "image.jpg", "w": w, "h": h, "rgb_fnv1a64": fnv1a64(img.tobytes()),
                   "resize": cases}, fp, indent=1)
        fp.write("\n")

    for arch, a in ARCHS.items():
        S = 224
        scale_size = math.floor(S / a["crop_pct"])
        resize = T.Resize(scale_size, interpolation=T.InterpolationMode.BICUBIC)
        crop = T.CenterCrop(S)
        resized = resize(img)
        cropped = crop(resized)
        crop_bytes = np.asarray(cropped, dtype=np.uint8)
        assert crop_bytes.shape == (S, S, 3)
        with open(os.path.join(OUT, arch + ".crop.rgb"), "wb") as fp:
            fp.write(crop_bytes.tobytes())
        x = T.Normalize(MEAN, STD)(T.ToTensor()(cropped)).unsqueeze(0)
        # What the C test feeds the model: the stored crop, /255, normalised
        # in float32; it must be the very tensor torchvision made.
        c = torch.from_numpy(crop_bytes.copy()).permute(2, 0, 1).float().div(255)
        c = ((c - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)).unsqueeze(0)
        assert torch.equal(c, x)

        specs = a["specs"]()
        model = a["build"]().eval()
        load_weights(model, specs, a["tv_name"])
        with torch.no_grad():
            logits = model(x)[0].numpy().astype(np.float32)
        # The one-weight change the C test must notice, measured here.
        pmodel = a["build"]().eval()
        load_weights(pmodel, specs, a["tv_name"], a["perturb"])
        with torch.no_grad():
            plogits = pmodel(x)[0].numpy()
        perr = rel_err(plogits, logits)
        assert perr > 10 * TOL_REL, perr
        # And the quiet layers' purpose: eps 1e-5 in every norm must show.
        for mod in pmodel.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-5
        load_weights(pmodel, specs, a["tv_name"])
        with torch.no_grad():
            eerr = rel_err(pmodel(x)[0].numpy(), logits)
        assert eerr > 10 * TOL_REL, eerr
        print("%s: resize to %s, crop at (%d, %d), logits in [%.3f, %.3f], std %.3f; "
              "perturbed weight moves them by %.2e relative, LayerNorm eps 1e-5 by %.2e" %
              (arch, resized.size, round((resized.size[1] - S) / 2.0), round((resized.size[0] - S) / 2.0),
               logits.min(), logits.max(), logits.std(), perr, eerr))
        fx = {
            "arch": arch,
            "generator": "tools/numerics/classifiers.py",
            "reference": "torchvision %s %s, torch %s, PIL %s" %
                         (torchvision.__version__, type(model).__name__, torch.__version__, PIL.__version__),
            "weights": "tools/numerics/fill.py fill(name, shape, scale, offset), timm names",
            "image": "image.jpg",
            "crop": arch + ".crop.rgb",
            "preprocess": {"image_size": S, "crop_pct": a["crop_pct"], "interpolation": "bicubic",
                           "resize_short": scale_size, "resized": list(resized.size),
                           "crop_top": round((resized.size[1] - S) / 2.0),
                           "crop_left": round((resized.size[0] - S) / 2.0),
                           "mean": MEAN, "std": STD},
            "tolerance": {"logits_rel": TOL_REL, "definition": "max|a - b| / max|b| over the logits"},
            "perturb": dict(a["perturb"], rel_err=perr),
            "ln_eps_1e-5_rel_err": eerr,
            "tensors": specs,
            "logits": [[float("%.9g" % v) for v in logits]],
        }
        with open(os.path.join(OUT, arch + ".json"), "w") as fp:
            fp.write(dump_lines(fx))


if __name__ == "__main__":
    main()

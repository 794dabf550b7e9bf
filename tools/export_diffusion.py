#!/usr/bin/env python3
"""export_diffusion.py: writes a shiftforge diffusion pipeline folder
(sf-diffusion.json + TorchScript modules, the contract of ml/sf_diffusion.h)
from a diffusers pipeline.

RUN THIS ON YOUR OWN MACHINE, with torch and diffusers (and transformers)
installed and the weights at hand (downloaded or cached by Hugging Face).  It
is not run where shiftforge is built and tested: no weights can be downloaded
there, and nothing in the build needs Python.

    python3 tools/export_diffusion.py runwayml/stable-diffusion-v1-5 /models/sd15-ts \\
        --device cuda --dtype fp16

What it writes, for Stable Diffusion 1.x (StableDiffusionPipeline):
  text_encoder.pt  forward(tokens int64[B,77]) -> CLIPTextModel's last_hidden_state [B,77,768]
  unet.pt          forward(x [B,4,64,64], t int64[B], context [B,77,768]) -> noise [B,4,64,64]
  decoder.pt       forward(z [B,4,64,64]) -> VAE decode [B,3,512,512] in [-1,1]
                   (shiftforge calls it with latents / latent_scale, as diffusers does)
  vocab.json, merges.txt   the CLIP BPE tokenizer files
  sf-diffusion.json        sizes, latent_scale (the VAE's scaling_factor), the
                           scheduler's settings as diffusers' DDIMScheduler reads
                           them, and the defaults of steps, eta and guidance
  guidance.pt      only with --guidance-module: your own TorchScript hook,
                   forward(x0 [B,C,H,W], t int64[B]) -> [B,C,H,W], added to the
                   noise as hook_scale * sqrt(1 - alpha_bar_t) * hook(x0, t); a
                   positive hook_scale moves samples away from where grad log q
                   points (the low-density baseline), see ml/sf_diffusion.h.

For DeepFloyd IF (IFPipeline, stage I, plus --stage2 for IFSuperResolutionPipeline):

    python3 tools/export_diffusion.py DeepFloyd/IF-I-XL-v1.0 /models/if-ts \\
        --stage2 DeepFloyd/IF-II-L-v1.0 --device cuda --dtype fp16

  text_encoder.pt  forward(tokens int64[B,77]) -> T5EncoderModel's last_hidden_state
                   [B,77,4096], with attention_mask = tokens != 0 (T5's pad id)
                   computed inside, as IFPipeline.encode_prompt passes it
  unet.pt          stage I: forward(x [B,3,64,64], t int64[B], context [B,77,4096])
                   -> [B,6,64,64]: the noise, then the learned variance
  unet_2.pt        stage II: forward(x [B,6,256,256], t int64[B], context [B,77,4096],
                   noise_level int64[B]) -> [B,6,256,256]; x is the sample with the
                   noised upscaled stage I image concatenated, noise_level the UNet's
                   class_labels (IFSuperResolutionPipeline's call, exactly)
  spiece.model     the T5 SentencePiece model (tokenizer kind "t5")
  sf-diffusion.json  the DDPMScheduler settings of both stages (sampler "ddpm",
                   variance_type learned_range, dynamic thresholding), the
                   image_noising_scheduler's betas, noise_level 250 and IF's
                   defaults (stage I: 100 steps, guidance 7; stage II: 50 steps,
                   guidance 4)
Stage II reuses stage I's T5 embeddings (its pipeline is loaded without a
text encoder), as the IF examples do.  Stage III (the x4 upscaler to 1024) is
not part of the contract.  shiftforge lower-cases and strips prompts as
IFPipeline does with clean_caption=False; clean_caption's URL and HTML
scrubbing is not done (the captions shiftforge writes have none).

Caveats of tracing (torch.jit.trace):
  * Trace on the kind of device you will run on (--device cuda).  Diffusers'
    timestep embedding creates tensors on the input's device, and tracing
    records that device as a constant: a UNet traced on cuda:0 wants cuda:0.
    Give each worker one GPU (CUDA_VISIBLE_DEVICES) so that it is cuda:0.
  * Do not freeze the modules (torch.jit.freeze): shiftforge casts the
    parameters and buffers to the worker's dtype, and frozen weights are
    constants it cannot see.
  * Trace in the dtype the workers will use (their "dtype" setting): shiftforge
    casts parameters and buffers, but not the constants a trace may hold.
    fp16 tracing needs a GPU; bf16 works on both.
"""
import argparse
import json
import os
import shutil
import sys

DDIM_KEYS = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "steps_offset",
             "set_alpha_to_one", "prediction_type", "clip_sample", "clip_sample_range")
# DDPMScheduler's keys that sf-diffusion.json holds (it has no set_alpha_to_one).
DDPM_KEYS = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "steps_offset",
             "prediction_type", "clip_sample", "clip_sample_range", "variance_type", "thresholding",
             "dynamic_thresholding_ratio", "sample_max_value")
BETA_KEYS = ("beta_schedule", "beta_start", "beta_end", "num_train_timesteps")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a diffusers pipeline: a Hugging Face id or a local folder")
    p.add_argument("out", help="the folder to write (created)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu",
                   help="device to trace on (default: cuda when there is one)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                   help="dtype to trace in: the workers' dtype")
    p.add_argument("--steps", type=int, default=None, help="defaults.steps (SD: 50, IF stage I: 100)")
    p.add_argument("--eta", type=float, default=0.0, help="defaults.eta (diffusers: 0)")
    p.add_argument("--guidance-scale", type=float, default=None,
                   help="defaults.guidance_scale (SD: 7.5, IF: 7)")
    p.add_argument("--guidance-module", default=None,
                   help="a TorchScript file forward(x0, t) -> direction, copied as guidance.pt")
    p.add_argument("--stage2", default=None,
                   help="IF only: the IFSuperResolutionPipeline (e.g. DeepFloyd/IF-II-L-v1.0) for the upscaler")
    p.add_argument("--stage2-steps", type=int, default=50, help="upscaler.defaults.steps (IF: 50)")
    p.add_argument("--stage2-guidance-scale", type=float, default=4.0,
                   help="upscaler.defaults.guidance_scale (IF: 4)")
    p.add_argument("--noise-level", type=int, default=250, help="upscaler.noise_level (IF: 250)")
    return p.parse_args(argv)


def _cuda():
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


def scheduler_config(pipe):
    """The pipeline's scheduler settings as diffusers' DDIMScheduler reads them."""
    from diffusers import DDIMScheduler
    cfg = DDIMScheduler.from_config(pipe.scheduler.config).config
    if cfg.get("trained_betas") is not None:
        sys.exit("export_diffusion: the scheduler has trained_betas, which sf-diffusion.json cannot hold")
    if cfg.get("timestep_spacing", "leading") != "leading":
        print("export_diffusion: warning: the scheduler asks for timestep_spacing %r; shiftforge's "
              "DDIM uses \"leading\" (diffusers' default for SD 1.x)" % cfg["timestep_spacing"],
              file=sys.stderr)
    if cfg.get("rescale_betas_zero_snr"):
        sys.exit("export_diffusion: rescale_betas_zero_snr is not implemented by shiftforge's DDIM")
    out = {k: cfg[k] for k in DDIM_KEYS}
    if out["beta_schedule"] not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        sys.exit("export_diffusion: beta_schedule %r is not supported" % out["beta_schedule"])
    if out["prediction_type"] not in ("epsilon", "v_prediction"):
        sys.exit("export_diffusion: prediction_type %r is not supported" % out["prediction_type"])
    if cfg.get("thresholding"):
        for k in ("thresholding", "dynamic_thresholding_ratio", "sample_max_value"):
            out[k] = cfg[k]
    return out


def ddpm_config(scheduler, what):
    """An IF stage's DDPMScheduler settings as sf-diffusion.json's schedule holds them."""
    cfg = dict(scheduler.config)
    if type(scheduler).__name__ != "DDPMScheduler":
        sys.exit("export_diffusion: %s's scheduler is %s; shiftforge runs IF with its DDPMScheduler"
                 % (what, type(scheduler).__name__))
    if cfg.get("trained_betas") is not None:
        sys.exit("export_diffusion: %s: trained_betas cannot be held by sf-diffusion.json" % what)
    if cfg.get("timestep_spacing", "leading") != "leading" or cfg.get("rescale_betas_zero_snr"):
        sys.exit("export_diffusion: %s: only \"leading\" timesteps without zero-SNR rescaling are "
                 "implemented" % what)
    cfg.setdefault("steps_offset", 0)
    out = {k: cfg[k] for k in DDPM_KEYS if k in cfg}
    if out.get("variance_type", "fixed_small") not in ("fixed_small", "learned_range"):
        sys.exit("export_diffusion: %s: variance_type %r is not implemented"
                 % (what, out["variance_type"]))
    if out.get("prediction_type", "epsilon") not in ("epsilon", "v_prediction"):
        sys.exit("export_diffusion: %s: prediction_type %r is not supported" % (what, out["prediction_type"]))
    out["sampler"] = "ddpm"
    return out


def trace(module, inputs, path):
    import torch
    with torch.no_grad():
        ts = torch.jit.trace(module.eval(), inputs, check_trace=False, strict=False)
    ts.save(path)
    # Run it once more with another batch size: a trace that baked the
    # example's batch in fails here, not on a worker.
    again = tuple(torch.cat([x, x], 0) for x in inputs)
    with torch.no_grad():
        out = torch.jit.load(path, map_location=inputs[0].device)(*again)
    print("  %s: %s -> %s" % (os.path.basename(path),
                              ", ".join(str(list(x.shape)) for x in again), list(out.shape)))


def export_sd(pipe, args, dev, dt):
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, te):
            super().__init__()
            self.te = te

        def forward(self, tokens):
            return self.te(tokens, return_dict=False)[0]          # last_hidden_state

    class Unet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t, context):
            return self.unet(x, t, encoder_hidden_states=context, return_dict=False)[0]

    class Decoder(torch.nn.Module):
        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, z):
            return self.vae.decode(z, return_dict=False)[0]

    tok = pipe.tokenizer
    T = tok.model_max_length
    if tok.pad_token == "<|endoftext|>":
        pad = "eot"
    elif tok.pad_token_id == 0:
        pad = "zero"
    else:
        sys.exit("export_diffusion: the tokenizer pads with %r (id %d); shiftforge pads with "
                 "<|endoftext|> or id 0" % (tok.pad_token, tok.pad_token_id))
    tok.save_pretrained(args.out)                                  # vocab.json, merges.txt
    for f in ("vocab.json", "merges.txt"):
        if not os.path.exists(os.path.join(args.out, f)):
            sys.exit("export_diffusion: the tokenizer wrote no %s (not a CLIP BPE tokenizer?)" % f)

    C = pipe.unet.config.in_channels
    H = pipe.unet.config.sample_size
    D = pipe.text_encoder.config.hidden_size
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    ids = tok(["a photo of a cat", ""], padding="max_length", max_length=T, truncation=True,
              return_tensors="pt").input_ids.to(dev)
    print("tracing (%s, %s):" % (dev, args.dtype))
    trace(TextEncoder(pipe.text_encoder), (ids,), os.path.join(args.out, "text_encoder.pt"))
    x = torch.randn(2, C, H, H, device=dev, dtype=dt)
    t = torch.tensor([999, 1], device=dev, dtype=torch.long)
    ctx = torch.randn(2, T, D, device=dev, dtype=dt)
    trace(Unet(pipe.unet), (x, t, ctx), os.path.join(args.out, "unet.pt"))
    trace(Decoder(pipe.vae), (x,), os.path.join(args.out, "decoder.pt"))
    sched = scheduler_config(pipe)
    return {
        "text_encoder": "text_encoder.pt",
        "unet": "unet.pt",
        "decoder": "decoder.pt",
        "tokenizer": {"kind": "clip", "vocab": "vocab.json", "merges": "merges.txt",
                      "context": T, "pad": pad},
        "channels": C,
        "sample_size": H,
        "image_size": H * factor,
        "latent_scale": pipe.vae.config.scaling_factor,
        "schedule": sched,
        "defaults": {"steps": 50 if args.steps is None else args.steps, "eta": args.eta,
                     "guidance_scale": 7.5 if args.guidance_scale is None else args.guidance_scale},
    }


def export_if(pipe, args, dev, dt):
    import diffusers
    import torch

    class T5Encoder(torch.nn.Module):
        # IF passes the tokenizer's attention mask; T5 pads with id 0, and
        # shiftforge's rows are padded with 0 after </s>, so it is tokens != 0.
        def __init__(self, te):
            super().__init__()
            self.te = te

        def forward(self, tokens):
            mask = (tokens != 0).long()
            return self.te(tokens, attention_mask=mask, return_dict=False)[0]

    class Unet(torch.nn.Module):
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t, context):
            return self.unet(x, t, encoder_hidden_states=context, return_dict=False)[0]   # 6 channels

    class Upscaler(torch.nn.Module):
        # IFSuperResolutionPipeline's call: x is [sample, noised upscaled
        # image] on channels, the noise level is the class label.
        def __init__(self, unet):
            super().__init__()
            self.unet = unet

        def forward(self, x, t, context, noise_level):
            return self.unet(x, t, encoder_hidden_states=context, class_labels=noise_level,
                             return_dict=False)[0]

    tok = pipe.tokenizer
    T = 77                                  # IFPipeline.encode_prompt's max_length
    tok.save_pretrained(args.out)           # spiece.model (and HF's own files)
    if not os.path.exists(os.path.join(args.out, "spiece.model")):
        sys.exit("export_diffusion: the tokenizer wrote no spiece.model (not T5's?)")
    if tok.pad_token_id != 0 or tok.eos_token_id != 1:
        sys.exit("export_diffusion: the T5 tokenizer has pad %d and eos %d; shiftforge's t5 kind "
                 "pads with 0 after </s> (1)" % (tok.pad_token_id, tok.eos_token_id))
    C = pipe.unet.config.in_channels
    H = pipe.unet.config.sample_size
    D = pipe.text_encoder.config.d_model
    ids = tok(["a photo of a cat", ""], padding="max_length", max_length=T, truncation=True,
              return_tensors="pt").input_ids.to(dev)
    print("tracing (%s, %s):" % (dev, args.dtype))
    trace(T5Encoder(pipe.text_encoder), (ids,), os.path.join(args.out, "text_encoder.pt"))
    x = torch.randn(2, C, H, H, device=dev, dtype=dt)
    t = torch.tensor([999, 1], device=dev, dtype=torch.long)
    ctx = torch.randn(2, T, D, device=dev, dtype=dt)
    trace(Unet(pipe.unet), (x, t, ctx), os.path.join(args.out, "unet.pt"))
    conf = {
        "text_encoder": "text_encoder.pt",
        "unet": "unet.pt",
        "tokenizer": {"kind": "t5", "model": "spiece.model", "context": T},
        "channels": C,
        "sample_size": H,
        "image_size": H,
        "schedule": ddpm_config(pipe.scheduler, "stage I"),
        "defaults": {"steps": 100 if args.steps is None else args.steps, "eta": args.eta,
                     "guidance_scale": 7.0 if args.guidance_scale is None else args.guidance_scale},
    }
    if args.stage2:
        # Stage II without its own T5: the embeddings are stage I's.
        sr = diffusers.IFSuperResolutionPipeline.from_pretrained(
            args.stage2, text_encoder=None, torch_dtype=dt,
            **({"variant": "fp16"} if args.dtype == "fp16" else {}))
        sr.to(dev)
        S = sr.unet.config.sample_size
        if sr.unet.config.in_channels != 2 * C:
            sys.exit("export_diffusion: stage II's UNet takes %d channels, not 2 x %d"
                     % (sr.unet.config.in_channels, C))
        x2 = torch.randn(2, 2 * C, S, S, device=dev, dtype=dt)
        level = torch.tensor([250, 250], device=dev, dtype=torch.long)
        trace(Upscaler(sr.unet), (x2, t, ctx, level), os.path.join(args.out, "unet_2.pt"))
        noising = {k: v for k, v in dict(sr.image_noising_scheduler.config).items() if k in BETA_KEYS}
        conf["image_size"] = S
        conf["upscaler"] = {
            "unet": "unet_2.pt",
            "sample_size": S,
            "schedule": ddpm_config(sr.scheduler, "stage II"),
            "noise_schedule": noising,
            "noise_level": args.noise_level,
            "defaults": {"steps": args.stage2_steps, "guidance_scale": args.stage2_guidance_scale},
        }
    return conf


def main(argv):
    args = parse_args(argv)
    try:
        import torch
        import diffusers
    except ImportError as e:
        sys.exit("export_diffusion: needs torch and diffusers (pip install torch diffusers "
                 "transformers): %s" % e)
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    dev = torch.device(args.device)
    if args.dtype == "fp16" and dev.type == "cpu":
        sys.exit("export_diffusion: fp16 needs --device cuda (CPU has no half convolutions)")
    pipe = diffusers.DiffusionPipeline.from_pretrained(args.model, torch_dtype=dt)
    kind = type(pipe).__name__
    is_if = kind.startswith("IF")
    if args.stage2 and not is_if:
        sys.exit("export_diffusion: --stage2 is for DeepFloyd IF; %s is not an IF pipeline" % kind)
    if not is_if and not hasattr(pipe, "vae"):
        sys.exit("export_diffusion: %s is neither a Stable Diffusion 1.x nor an IF stage I pipeline" % kind)
    pipe.to(dev)
    os.makedirs(args.out, exist_ok=True)
    conf = (export_if if is_if else export_sd)(pipe, args, dev, dt)
    conf["source"] = "%s (%s, traced on %s in %s)" % (args.model, kind, dev, args.dtype)
    if args.guidance_module:
        shutil.copyfile(args.guidance_module, os.path.join(args.out, "guidance.pt"))
        conf["guidance"] = "guidance.pt"
    with open(os.path.join(args.out, "sf-diffusion.json"), "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")
    print("wrote %s" % os.path.join(args.out, "sf-diffusion.json"))


if __name__ == "__main__":
    main(sys.argv[1:])

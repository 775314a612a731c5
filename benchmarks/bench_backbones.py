"""Time one image through each backbone at real architecture sizes (random weights, no download).

Rows: SD 1.5 (DiffSim-S, for reference), SDXL base (DiffSim-S), DiT-XL/2 (DiffSim DiT) and SD 1.5 +
IP-Adapter Plus with its ViT-H/14 image encoder (DiffSim-C). Each row runs in its own process (so the
memory of one model is returned before the next is built) and reports: build time, the first image
(includes the text / class conditioning), then the median of a few more single images (VAE encode +
noising + the denoiser truncated after the layer) in wall time and in process CPU time (less sensitive
to other load on a shared machine; with 2 threads it is up to 2x the wall time), and the peak RSS.

    python benchmarks/bench_backbones.py                    # all rows, SDXL at 512 px in bfloat16
    python benchmarks/bench_backbones.py --rows sdxl --sdxl-size 1024
    python benchmarks/bench_backbones.py --rows dit --repeats 5

SDXL in float32 needs about 14 GB (U-Net 10.3 GB + text encoders 3.3 GB); ``--sdxl-dtype bfloat16``
(default) halves that, which is what fits a shared 24 GiB machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import ROOT, machine, make_images, peak_rss_gib, sd15_random

SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D",
                                                                       "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
DIT_XL_2 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
                sample_size=32, patch_size=2, num_embeds_ada_norm=1000, norm_type="ada_norm_zero",
                activation_fn="gelu-approximate", attention_bias=True, norm_elementwise_affine=False)


def _vae(scaling: float, **over):
    from diffusers import AutoencoderKL

    from common import SD15_VAE_CONFIG

    return AutoencoderKL(**dict(SD15_VAE_CONFIG, scaling_factor=scaling, **over))


def _clip_text(hidden: int, layers: int, heads: int, inter: int, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, max_position_embeddings=77, hidden_act="gelu",
                         projection_dim=projection or 768)
    return CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)


def build(row: str, dtype: torch.dtype):
    """(backbone, layers, condition) for one row with random weights."""
    if row == "sd15":
        from diffsim import StableDiffusionBackbone

        bb = StableDiffusionBackbone(sd15_random(), torch.device("cpu"), torch.float32)
        return bb, bb.resolve(["up0"]), "High quality image"
    if row == "sdxl":
        from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
        from transformers import CLIPTokenizer

        from diffsim.backbones.sdxl import SDXLBackbone
        from tests.tiny_sd import _tokenizer_files
        from tests.tiny_sdxl import SDXL_SCHEDULER_CONFIG

        with torch.device("cpu"):
            torch.set_default_dtype(dtype)  # build the big modules directly in the target dtype
            unet = UNet2DConditionModel(**SDXL_UNET)
            text = _clip_text(768, 12, 12, 3072)
            text_2 = _clip_text(1280, 32, 20, 5120, projection=1280)
            torch.set_default_dtype(torch.float32)
        tok_dir = Path(tempfile.mkdtemp()) / "tok"
        _tokenizer_files(tok_dir)
        tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), model_max_length=77)
        pipe = StableDiffusionXLPipeline(vae=_vae(0.13025, force_upcast=True), text_encoder=text,
                                         text_encoder_2=text_2, tokenizer=tok, tokenizer_2=tok, unet=unet,
                                         scheduler=EulerDiscreteScheduler(**SDXL_SCHEDULER_CONFIG),
                                         add_watermarker=False)
        bb = SDXLBackbone(pipe, "random-sdxl-base", torch.device("cpu"), dtype)
        return bb, bb.resolve(["up0"]), "High quality image"
    if row == "dit":
        from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

        from diffsim.backbones.dit import DiTBackbone
        from tests.tiny_dit import DIT_SCHEDULER_CONFIG

        pipe = DiTPipeline(transformer=DiTTransformer2DModel(**DIT_XL_2), vae=_vae(0.18215),
                           scheduler=DDIMScheduler(**DIT_SCHEDULER_CONFIG))
        bb = DiTBackbone(pipe, "random-DiT-XL-2-256", torch.device("cpu"), torch.float32)
        return bb, bb.resolve(["block14"]), 1
    if row == "ip":
        from diffusers import StableDiffusionPipeline
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        from diffsim.backbones.ip_adapter import IPAdapterBackbone
        from tests.tiny_ip_adapter import ip_adapter_plus_state_dict

        parts = sd15_random()
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(  # OpenCLIP ViT-H/14 (h94 models/image_encoder)
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224,
            patch_size=14, projection_dim=1024, hidden_act="gelu"))
        pipe = StableDiffusionPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                       unet=parts.unet, scheduler=parts.scheduler, safety_checker=None,
                                       feature_extractor=None, image_encoder=encoder, requires_safety_checker=False)
        sd = ip_adapter_plus_state_dict(parts.unet, 1280, resampler_dim=768)
        state = {"image_proj": {k[11:]: v for k, v in sd.items() if k.startswith("image_proj.")},
                 "ip_adapter": {k[11:]: v for k, v in sd.items() if k.startswith("ip_adapter.")}}
        pipe.load_ip_adapter(state, subfolder="", weight_name="ip-adapter-plus_sd15.safetensors")
        encoder.eval().requires_grad_(False)
        bb = IPAdapterBackbone(parts, pipe, "random-ip-adapter-plus", torch.device("cpu"), torch.float32)
        return bb, bb.resolve(["up0.cross"], kind="cross"), "High quality image"
    raise SystemExit(f"unknown row {row}")


def run_row(row: str, size: int, dtype: torch.dtype, repeats: int) -> dict:
    from diffsim.images import to_unit_tensor

    t0 = time.perf_counter()
    bb, layers, cond = build(row, dtype)
    built = time.perf_counter() - t0
    imgs = make_images(Path(tempfile.mkdtemp()), repeats + 1, size)
    px = [to_unit_tensor(p, size, "none", i)[None] * 2 - 1 for i, p in enumerate(imgs)]
    times, cpu = [], []
    with torch.inference_mode():
        for x in px:
            t, c = time.perf_counter(), time.process_time()
            bb.extract(x, layers, 500 if row != "dit" else 250, cond, 2334)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    n_params = sum(p.numel() for m in (getattr(bb, "unet", None), getattr(bb, "transformer", None)) if m is not None
                   for p in m.parameters())
    return {"row": row, "size": size, "dtype": str(dtype if row == "sdxl" else torch.float32).removeprefix("torch."),
            "layer": layers[0], "denoiser_params_m": round(n_params / 1e6), "build_s": round(built, 1),
            "first_image_s": round(times[0], 2), "per_image_s": round(statistics.median(times[1:]), 2),
            "per_image_cpu_s": round(statistics.median(cpu[1:]), 2),
            "peak_rss_gib": round(peak_rss_gib(), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="sd15,sdxl,dit,ip")
    ap.add_argument("--sdxl-size", type=int, default=512)
    ap.add_argument("--sdxl-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one row in this process
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    sizes = {"sd15": 512, "sdxl": args.sdxl_size, "dit": 256, "ip": 512}
    if args.one:
        res = run_row(args.one, sizes[args.one], getattr(torch, args.sdxl_dtype), args.repeats)
        print("RESULT " + json.dumps(res), flush=True)
        return
    print(f"machine: {machine()}", flush=True)
    results = []
    for row in args.rows.split(","):
        cmd = [sys.executable, __file__, "--one", row, "--sdxl-size", str(args.sdxl_size), "--sdxl-dtype",
               args.sdxl_dtype, "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{row}: failed\n{proc.stderr[-2000:]}", flush=True)
            continue
        res = json.loads(line[7:])
        results.append(res)
        print(json.dumps(res), flush=True)
    print("\n| backbone | size | dtype | layer | denoiser params | first image | per image (wall) | per image (CPU) "
          "| peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['size']} | {r['dtype']} | `{r['layer']}` | {r['denoiser_params_m']} M | "
              f"{r['first_image_s']} s | {r['per_image_s']} s | {r['per_image_cpu_s']} s | {r['peak_rss_gib']} GiB |")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()

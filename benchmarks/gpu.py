"""GPU benchmark: sdmorph's engine on full-size SD 1.5 and SDXL architectures (random weights).

    python benchmarks/gpu.py [--peak-tflops 989] [--compile] [--case sd15 sdxl sd15-lcm]
    python benchmarks/gpu.py --cpu-smoke      # tiny configs on the CPU: exercises every path

Cases (default: all three):
  sd15      SD 1.5 at 512x512, 25 steps (--steps/--size change them), guidance 7.5 (CFG)
  sdxl      SDXL base at 1024x1024, 30 steps, guidance 7.5: both text encoders, pooled text,
            size/crop ids; the VAE decodes in float32 as sdmorph does (SDXL's force_upcast)
  sd15-lcm  SD 1.5 at 512x512 with the LCM scheduler, 4 steps, guidance 1 (no negative pass),
            per-step noise interpolated between the seeds as in a transition

Nothing is downloaded: the UNet, VAE and CLIP text encoder are built from SD 1.5's
configurations (written below) with random weights, in float16; speed does not depend on
the weights, nor on the tokenizer (the tiny one is used). The engine is sdmorph's own
`Engine`, given this pipeline in place of a loaded one, so `--compile` is `Engine(compile=True)`.

Figures: frames/s at batch 1 and at the default batch (8), steady state (after a warm-up
batch); the share of the GPU's dense float16 peak those frames use, from the issue's
estimate of the work per frame; with --compile the same again plus the compile time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Work per frame, from the issue: one SD 1.5 UNet pass at 64x64 latents (512x512 pixels) and
# one VAE decode of a 512x512 image, in TFLOP (multiply-adds count as two operations).
UNET_TFLOP = 0.8
VAE_TFLOP = 2.5
# SDXL base, estimated the same way: a UNet pass at 128x128 latents about 6 TFLOP; the VAE
# decode grows with the pixel count (4x the 512x512 decode). Estimates, not measurements.
UNET_XL_TFLOP = 6.0
VAE_1024_TFLOP = 4 * VAE_TFLOP
H100_SXM_DENSE_FP16_TFLOPS = 989.0

UNET_SD15: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                       "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
VAE_SD15: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
CLIP_SD15: dict[str, Any] = {  # openai/clip-vit-large-patch14's text tower
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
UNET_SDXL: dict[str, Any] = {  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    "sample_size": 128,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [320, 640, 1280],
    "layers_per_block": 2,
    "transformer_layers_per_block": [1, 2, 10],
    "attention_head_dim": [5, 10, 20],
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "norm_num_groups": 32,
}
VAE_SDXL: dict[str, Any] = {**VAE_SD15, "sample_size": 1024, "scaling_factor": 0.13025,
                            "force_upcast": True}
CLIP_BIGG: dict[str, Any] = {  # SDXL's second text encoder (OpenCLIP ViT-bigG text tower)
    "vocab_size": 49408,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
CASES = ("sd15", "sdxl", "sd15-lcm")
# (size, steps, guidance, scheduler, UNet TFLOP, VAE TFLOP) of each case at full size.
CASE_SETTINGS: dict[str, tuple[int, int, float, str | None, float, float]] = {
    "sd15": (512, 25, 7.5, None, UNET_TFLOP, VAE_TFLOP),
    "sdxl": (1024, 30, 7.5, None, UNET_XL_TFLOP, VAE_1024_TFLOP),
    "sd15-lcm": (512, 4, 1.0, "lcm", UNET_TFLOP, VAE_TFLOP),
}
# --cpu-smoke: the same block types, a fraction of the width and depth.
SMOKE = {
    "unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1,
             "cross_attention_dim": 32, "attention_head_dim": 2, "norm_num_groups": 16},
    "vae": {"block_out_channels": [16, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8},
    "clip": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "projection_dim": 32},
}


def build_pipeline(device: str, dtype: Any, smoke: bool) -> Any:
    """SD 1.5's architecture with random weights (built on `device`), safety checker off."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from sdmorph.render.tiny import PNDM_CONFIG, build_tiny_pipeline

    tokenizer = build_tiny_pipeline(trained=False).tokenizer
    unet_cfg = {**UNET_SD15, **(SMOKE["unet"] if smoke else {})}
    vae_cfg = {**VAE_SD15, **(SMOKE["vae"] if smoke else {})}
    clip_cfg = {**CLIP_SD15, **(SMOKE["clip"] if smoke else {})}
    clip_cfg["vocab_size"] = max(clip_cfg["vocab_size"], len(tokenizer))
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg, **special))
    for module in (unet, vae, text_encoder):
        module.eval().requires_grad_(False)
        torch.nn.Module.to(module, dtype=dtype)  # diffusers' own .to(dtype) warns needlessly
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler.from_config(PNDM_CONFIG), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sdxl_pipeline(device: str, dtype: Any, smoke: bool) -> Any:
    """SDXL base's architecture with random weights (smoke: the built-in tiny-xl)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdmorph.render.tiny_xl import EULER_XL_CONFIG, build_tiny_xl_pipeline

    tiny = build_tiny_xl_pipeline()
    if smoke:
        return tiny
    tokenizer = tiny.tokenizer
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    vocab = max(CLIP_SD15["vocab_size"], len(tokenizer))
    with torch.device(device):
        unet = UNet2DConditionModel(**UNET_SDXL)
        vae = AutoencoderKL(**VAE_SDXL)
        text_encoder = CLIPTextModel(CLIPTextConfig(**{**CLIP_SD15, "vocab_size": vocab},
                                                    **special))
        text_encoder_2 = CLIPTextModelWithProjection(
            CLIPTextConfig(**{**CLIP_BIGG, "vocab_size": vocab}, **special))
    for module in (unet, text_encoder, text_encoder_2, vae):
        module.eval().requires_grad_(False)
        torch.nn.Module.to(module, dtype=dtype)
    torch.nn.Module.to(vae, dtype=torch.float32)  # force_upcast, as sdmorph's loader does
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tiny.tokenizer_2, unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(EULER_XL_CONFIG), add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_case(case: str, device: str, dtype: Any, smoke: bool) -> Any:
    """The pipeline of a case; sd15-lcm is SD 1.5 with sdmorph's `lcm` scheduler."""
    if case == "sdxl":
        return build_sdxl_pipeline(device, dtype, smoke)
    pipe = build_pipeline(device, dtype, smoke)
    scheduler = CASE_SETTINGS[case][3]
    if scheduler:
        from sdmorph.render.schedulers import make_scheduler

        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler)
    return pipe


def make_engine(pipe: Any, device: str, compile: bool) -> Any:
    """sdmorph's Engine around `pipe`: the loader is bypassed, nothing else is."""
    from sdmorph.render.engine import Engine

    with mock.patch("sdmorph.render.engine.load_pipeline", return_value=pipe):
        return Engine("random-weights", device=device, compile=compile)


def frame_inputs(engine: Any, n: int, size: int, guidance: float = 7.5,
                 steps: int = 25) -> list[Any]:
    """`n` frames of one transition between two seeds and two prompts, as the renderer makes
    them: SDXL's pooled text and stochastic samplers' per-step noise interpolated too."""
    import numpy as np

    from sdmorph.core.interp import frame_times, lerp, slerp
    from sdmorph.render.engine import FrameInput

    ends = [engine.embed(text, "") for text in ("a red sun over the sea",
                                                "a blue moon in a dark forest")]
    seeds = (1001, 2002)
    noise = [engine.noise(seed, "cpu", size, size) for seed in seeds]
    steps_noise = [engine.step_noise(seed, "cpu", size, size, steps) for seed in seeds]

    def mix(k: int, t: float) -> Any:
        a, b = ends[0][k], ends[1][k]
        return None if a is None else np.asarray(lerp(a, b, t), dtype=np.float32)

    frames = []
    for t in frame_times(n):
        step = (np.stack([slerp(x, y, t) for x, y in zip(*steps_noise, strict=True)])
                if engine.stochastic else None)
        frames.append(FrameInput(slerp(noise[0], noise[1], t), mix(0, t), mix(1, t), guidance,
                                 pooled=mix(2, t), uncond_pooled=mix(3, t), step_noise=step))
    return frames


@dataclass
class Measured:
    case: str
    size: int
    steps: int
    batch: int
    compiled: bool
    fps: float
    first_batch_seconds: float  # the warm-up batch: compile time lives here
    steady_batch_seconds: float
    unet_passes_per_frame: float
    share_of_peak: float

    @property
    def compile_seconds(self) -> float:
        return self.first_batch_seconds - self.steady_batch_seconds


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(engine: Any, device: str, batch: int, batches: int, case: str, peak: float,
            compiled: bool, args: argparse.Namespace) -> Measured:
    size, steps, guidance, _, unet_tflop, vae_tflop = case_settings(case, args)
    frames = frame_inputs(engine, batch * (batches + 1), size, guidance, steps)
    times = []
    evals = engine.unet_evals
    for k in range(batches + 1):
        _sync(device)
        start = time.perf_counter()
        engine.render(frames[k * batch:(k + 1) * batch], steps=steps, width=size, height=size)
        _sync(device)
        times.append(time.perf_counter() - start)
    print(f"  {case} batch {batch}{' compiled' if compiled else ''}: seconds per batch "
          + " ".join(f"{t:.2f}" for t in times))
    steady = sorted(times[1:])[len(times[1:]) // 2]  # median of the batches after warm-up
    passes = (engine.unet_evals - evals) / (batch * (batches + 1))
    fps = batch / steady
    return Measured(case, size, steps, batch, compiled, fps, times[0], steady, passes,
                    share_of_peak(fps, passes, peak, unet_tflop, vae_tflop))


def case_settings(case: str, args: argparse.Namespace) -> tuple[Any, ...]:
    """A case's (size, steps, guidance, scheduler, UNet TFLOP, VAE TFLOP); --steps/--size
    change the sd15 case only; smoke runs shrink every case to 64x64 and 2 steps."""
    size, steps, guidance, scheduler, unet, vae = CASE_SETTINGS[case]
    if case == "sd15":
        size, steps = args.size, args.steps
    if args.cpu_smoke:
        size, steps = 64, min(steps, 2)
    return size, steps, guidance, scheduler, unet, vae


def share_of_peak(fps: float, unet_passes: float, peak_tflops: float,
                  unet_tflop: float = UNET_TFLOP, vae_tflop: float = VAE_TFLOP) -> float:
    """share = frames/s x (UNet passes per frame x UNet TFLOP + VAE TFLOP) / peak TFLOPS."""
    return fps * (unet_passes * unet_tflop + vae_tflop) / peak_tflops


def run(args: argparse.Namespace) -> list[Measured]:
    import torch

    if args.cpu_smoke:
        device, dtype = "cpu", torch.float32
        torch.set_num_threads(args.threads or torch.get_num_threads())
    elif not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU and torch sees none on this machine "
                         "(run `python benchmarks/gpu.py --cpu-smoke` to exercise it on the CPU)")
    else:
        device, dtype = "cuda", torch.float16
    results = []
    for case in args.case:
        started = time.perf_counter()
        pipe = build_case(case, device, dtype, args.cpu_smoke)
        print(f"built {case} ({'smoke' if args.cpu_smoke else 'full size'}) on {device} in "
              f"{time.perf_counter() - started:.1f}s")
        for compiled in [False, True] if args.compile else [False]:
            for batch in args.batch:
                if compiled:
                    uncompile(pipe)
                engine = make_engine(pipe, device, compiled)
                results.append(measure(engine, device, batch, args.batches, case,
                                       args.peak_tflops, compiled, args))
                print_row(results[-1])
        del pipe
        if device == "cuda":
            torch.cuda.empty_cache()
    return results


def uncompile(pipe: Any) -> None:
    """Undo a previous Engine(compile=True) and forget its graphs, so that each batch size
    gets its own static-shape compile (as one `sdmorph` run at one batch size does)."""
    import torch

    pipe.unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    pipe.vae.decoder = getattr(pipe.vae.decoder, "_orig_mod", pipe.vae.decoder)
    torch._dynamo.reset()


def print_row(m: Measured) -> None:
    mode = "compiled" if m.compiled else "eager"
    extra = f", compile {m.compile_seconds:.1f}s" if m.compiled else ""
    print(f"{m.case:8s} {m.size}px {m.steps} steps {mode:8s} batch {m.batch:2d}: "
          f"{m.fps:7.3f} frames/s, "
          f"{m.unet_passes_per_frame:.0f} UNet passes/frame, "
          f"{100 * m.share_of_peak:5.1f}% of peak (first batch {m.first_batch_seconds:.1f}s"
          f"{extra})")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peak-tflops", type=float, default=H100_SXM_DENSE_FP16_TFLOPS,
                        help="the GPU's dense fp16/bf16 peak (default: H100 SXM, 989)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--batches", type=int, default=3, help="timed batches after warm-up")
    parser.add_argument("--compile", action="store_true", help="also time Engine(compile=True)")
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES),
                        help="which architectures and samplers (default: all)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="tiny configs on the CPU (64x64, 2 steps): checks the code runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (--cpu-smoke)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "gpu.json")
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.size, args.steps, args.batch = 64, 2, [1, 2]
        args.batches = min(args.batches, 3)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    results = run(args)
    print(f"share of peak = frames/s x (UNet passes per frame x UNet TFLOP + VAE TFLOP) / "
          f"{args.peak_tflops:g} TFLOPS; UNet/VAE TFLOP: SD 1.5 512px {UNET_TFLOP}/{VAE_TFLOP}, "
          f"SDXL 1024px {UNET_XL_TFLOP}/{VAE_1024_TFLOP} (estimates)")
    print("  (UNet passes per frame = 2 x the scheduler's timesteps with guidance > 1: the UNet "
          "runs on the prompt and on the negative prompt; 1 x at guidance <= 1, as sd15-lcm)")
    if args.cpu_smoke:
        print("  smoke run: shrunken models on the CPU, so the shares above mean nothing")
    from _common import machine_info

    info = machine_info()
    import torch

    if torch.cuda.is_available() and not args.cpu_smoke:
        info["gpu"] = torch.cuda.get_device_name()
    data = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
            "results": [{**vars(m), "compile_seconds": m.compile_seconds} for m in results]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from sdmorph.formats.fsio import write_text

    write_text(args.json, json.dumps(data, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

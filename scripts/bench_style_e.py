"""Time Style-E inference: 10 s of audio -> expression coefficients, by part.

    python scripts/bench_style_e.py [--seconds 10] [--repeats 5] [--model style_e]

Builds the chosen model config with random weights (timing does not depend on them): mel
spectrogram and windows, Audio2Exp, and DDIM (5 steps, guidance 1) over the cross-faded
windows. CLIP is excluded (sentences are encoded once and cached). Runs on the CPU (the chosen
precision, and fp32 for comparison) and, when present, on CUDA. The last line is a JSON object
with ``seconds_per_10s_audio`` (CPU, median) and the per-part split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def bench(device: str, seconds: float, repeats: int, model_name: str, precision: str) -> dict:
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from stylization.constants import EXP_DIM, SAMPLE_RATE
    from stylization.data.audio import mel_windows, melspectrogram, n_video_frames
    from stylization.numerics import native_bf16
    from stylization.style_e.diffusion import diffusion_sampler
    from stylization.style_e.generate import StyleE

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["stage=style_e", f"model={model_name}"])
    torch.manual_seed(0)
    model = StyleE(instantiate(cfg.model.denoiser), instantiate(cfg.model.audio2exp), None,
                   diffusion_sampler(**cfg.model.diffusion), overlap_frames=int(cfg.model.overlap_frames),
                   precision=precision, channels_last=True).to(device).eval()
    text = torch.nn.functional.normalize(torch.randn(cfg.model.denoiser.text_dim), dim=0).to(device)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav = (0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    source = torch.zeros(EXP_DIM, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    parts = {"mel": [], "audio2exp": [], "diffusion": []}
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            mel = torch.from_numpy(mel_windows(melspectrogram(wav), n_video_frames(wav.size))).to(device)
            sync()
            t1 = time.perf_counter()
            audio_exp = model.audio_expression(mel, source)
            sync()
            t2 = time.perf_counter()
            from stylization.style_e.sequence import blend_windows, split_windows, window_starts

            starts = window_starts(len(mel), model.window, model.overlap)
            windows = split_windows(audio_exp, starts, model.window)
            out = model.sample_windows(windows, text, 1.0, torch.Generator().manual_seed(0))
            blend_windows(out, starts, len(mel))
            sync()
            t3 = time.perf_counter()
            if i > 0:  # the first run warms up
                for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                    parts[k].append(v)
    med = {k: statistics.median(v) for k, v in parts.items()}
    params = sum(p.numel() for p in model.denoiser.parameters())
    return {"device": device, "precision": precision, "bf16_native": native_bf16(torch.device(device)),
            "seconds_per_10s_audio": round(sum(med.values()) * 10 / seconds, 4),
            "parts": {k: round(v * 10 / seconds, 4) for k, v in med.items()}, "frames": n_video_frames(wav.size),
            "denoiser_parameters": params, "threads": torch.get_num_threads()}


def main() -> None:
    import torch

    from stylization.allocator import tune_allocator

    tune_allocator()  # as every entry point does (stylization/allocator.py)

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--model", default="style_e", help="model config (configs/model/)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="inference precision of the headline figure (auto: bf16 where native)")
    args = parser.parse_args()
    result = bench("cpu", args.seconds, args.repeats, args.model, args.precision)
    print(f"cpu {args.precision}: {json.dumps(result)}")
    if args.precision != "fp32":
        result["cpu_fp32"] = bench("cpu", args.seconds, args.repeats, args.model, "fp32")
        print(f"cpu fp32: {json.dumps(result['cpu_fp32'])}")
    if torch.cuda.is_available():
        result["cuda"] = bench("cuda", args.seconds, args.repeats, args.model, args.precision)
        print(f"cuda: {json.dumps(result['cuda'])}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

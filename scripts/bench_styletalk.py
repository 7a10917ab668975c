"""Time StyleTalk inference: 10 s of speech + a style clip -> expressions -> rendered frames, by part.

    python scripts/bench_styletalk.py [--seconds 10] [--repeats 3] [--model styletalk] [--render-frames 25]

Builds the chosen model config (configs/model/) and PIRenderer at the released size with random
weights (timing does not depend on them). Parts: ``phonemes`` (pocketsphinx's phone recogniser on the
speech; espeak-ng speaks a sentence for it), ``style_code`` (a 256-frame style clip through the style
encoder), ``decoder`` (content encoder and dynamic decoder for every frame) and ``renderer``
(PIRenderer at 256², timed on ``--render-frames`` frames and scaled to the whole clip). Runs on the
CPU (glibc's allocator tuned, as the entry points do) and, when present, on CUDA (the phonemes always
on the CPU). The last line is a JSON object with
``seconds_per_10s_audio`` (the sum) and the per-part split, each per 10 s of audio.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCE = ("The quick brown fox jumps over the lazy dog while the evening news plays softly in the kitchen, "
            "and a tired student carries the heavy box up the stairs before the storm.")


def speech(seconds: float):
    """espeak-ng speaking :data:`SENTENCE` (looped to ``seconds``), 16 kHz float32."""
    import numpy as np

    from stylization.data.audio import SAMPLE_RATE, load_audio

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/speech.wav"
        subprocess.run(["espeak-ng", "-w", path, SENTENCE], check=True, capture_output=True)
        wav = load_audio(path)
    n = int(seconds * SAMPLE_RATE)
    return np.resize(wav, n).astype(np.float32)


def bench(device: str, wav, repeats: int, model_name: str, render_frames: int) -> dict:
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from stylization.constants import SEMANTIC_DIM
    from stylization.data.audio import n_video_frames
    from stylization.data.phonemes import PhonemeRecognizer
    from stylization.styletalk.generate import StyleTalkMotion
    from stylization.styletalk.pirender import PIRenderer

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["stage=styletalk", f"model={model_name}"])
    torch.manual_seed(0)
    motion = StyleTalkMotion(instantiate(cfg.model.generator)).to(device)
    renderer = PIRenderer().to(device).eval()
    recognizer = PhonemeRecognizer()
    n = n_video_frames(wav.size)
    style = np.random.default_rng(0).normal(scale=0.2, size=(256, 64)).astype(np.float32)
    image = torch.rand(1, 3, 256, 256, device=device) * 2 - 1
    windows = torch.randn(render_frames, SEMANTIC_DIM, 27, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    parts = {"phonemes": [], "style_code": [], "decoder": [], "renderer": []}
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            labels = recognizer.recognize(wav, n)
            t1 = time.perf_counter()
            code = motion.style_code(style)
            sync()
            t2 = time.perf_counter()
            motion.generate(labels, code)
            sync()
            t3 = time.perf_counter()
            for f in range(render_frames):
                renderer(image, windows[f: f + 1])
            sync()
            t4 = time.perf_counter()
            if i > 0:  # the first run warms up
                for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, (t4 - t3) * n / render_frames)):
                    parts[k].append(v)
    seconds = wav.size / 16000
    med = {k: statistics.median(v) * 10 / seconds for k, v in parts.items()}
    return {"device": device, "seconds_per_10s_audio": round(sum(med.values()), 3),
            "parts": {k: round(v, 4) for k, v in med.items()}, "frames": n, "model": model_name,
            "generator_parameters": sum(p.numel() for p in motion.parameters()), "threads": torch.get_num_threads()}


def main() -> None:
    import torch

    from stylization.allocator import tune_allocator

    tune_allocator()  # as every entry point does

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--model", default="styletalk", help="model config (configs/model/)")
    parser.add_argument("--render-frames", type=int, default=25, help="frames rendered per run (scaled to the clip)")
    args = parser.parse_args()
    wav = speech(args.seconds)
    result = bench("cpu", wav, args.repeats, args.model, args.render_frames)
    print(f"cpu: {json.dumps(result)}")
    if torch.cuda.is_available():
        result["cuda"] = bench("cuda", wav, args.repeats, args.model, args.render_frames)
        print(f"cuda: {json.dumps(result['cuda'])}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

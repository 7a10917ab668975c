"""Time SAAS inference: 10 s of speech + a style clip -> expressions and head poses, by part.

    python scripts/bench_saas.py [--seconds 10] [--repeats 3]

Builds SAAS's audio-driven generator, the pose codebook and the audio-to-pose predictor at the
released sizes (configs/model/saas.yaml, saas_pose.yaml) with random weights (timing does not depend
on them). Parts: ``mel`` (the speech's mel windows), ``style_code`` (the source and target codes),
``expressions`` (Audio2Exp, the residual adapter and the decoder over every frame), ``mfcc`` (the
pose predictor's MFCC windows) and ``poses`` (the autoregressive token loop with nucleus sampling,
decoding and Savitzky–Golay smoothing). Runs on the CPU (glibc's allocator tuned, as the entry points
do) and, when present, on CUDA (the features always on the CPU). The last line is a JSON object with
``seconds_per_10s_audio`` (the sum) and the per-part split, each per 10 s of audio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCE = ("A sudden gust lifted the papers from the desk, and the old clockmaker laughed as he chased them "
            "across the workshop floor toward the open window.")


def speech(seconds: float):
    """espeak-ng speaking :data:`SENTENCE` (looped to ``seconds``), 16 kHz float32."""
    import numpy as np

    from stylization.constants import SAMPLE_RATE
    from stylization.data.synthetic.speech import synthesize

    return np.resize(synthesize(SENTENCE, "en-us", 50, 160), int(seconds * SAMPLE_RATE)).astype(np.float32)


def bench(device: str, wav, repeats: int) -> dict:
    import numpy as np
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from stylization.data.audio import mel_windows, melspectrogram, n_video_frames
    from stylization.data.mfcc import speech_mfcc_windows
    from stylization.saas.generate import SAASMotion, SAASPose

    configs = str(Path(__file__).resolve().parents[1] / "configs")
    with initialize_config_dir(config_dir=configs, version_base="1.3"):
        saas = compose(config_name="train", overrides=["stage=saas", "model=saas"]).model
        pose = compose(config_name="train", overrides=["stage=saas_pose", "model=saas_pose"]).model
    torch.manual_seed(0)
    motion = SAASMotion(instantiate(saas.generator)).to(device)
    poser = SAASPose(instantiate(pose.predictor), instantiate(pose.pose_codebook),
                     motion.generator.style_encoder).to(device)
    n = n_video_frames(wav.size)
    rng = np.random.default_rng(0)
    style = rng.normal(scale=0.2, size=(64, 64)).astype(np.float32)
    source = torch.from_numpy(rng.normal(scale=0.2, size=64).astype(np.float32))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    parts = {"mel": [], "style_code": [], "expressions": [], "mfcc": [], "poses": []}
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            mel = torch.from_numpy(mel_windows(melspectrogram(wav), n))
            t1 = time.perf_counter()
            code = motion.style_code(style)
            sync()
            t2 = time.perf_counter()
            motion.generate(mel, source, code)
            sync()
            t3 = time.perf_counter()
            speech_mfcc_windows(wav, n)
            t4 = time.perf_counter()
            poser.generate(wav, n, code, np.zeros(6, np.float32), seed=i)
            sync()
            t5 = time.perf_counter()
            if i > 0:  # the first run warms up
                for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4 - (t4 - t3))):
                    parts[k].append(v)
    seconds = wav.size / 16000
    med = {k: statistics.median(v) * 10 / seconds for k, v in parts.items()}
    return {"device": device, "seconds_per_10s_audio": round(sum(med.values()), 3),
            "parts": {k: round(v, 4) for k, v in med.items()}, "frames": n,
            "generator_parameters": sum(p.numel() for p in motion.parameters()),
            "pose_parameters": sum(p.numel() for p in poser.predictor.parameters())
            + sum(p.numel() for p in poser.pose_codebook.parameters()), "threads": torch.get_num_threads()}


def main() -> None:
    import torch

    from stylization.allocator import tune_allocator

    tune_allocator()  # as every entry point does

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    args = parser.parse_args()
    wav = speech(args.seconds)
    result = bench("cpu", wav, args.repeats)
    print(f"cpu: {json.dumps(result)}")
    if torch.cuda.is_available():
        result["cuda"] = bench("cuda", wav, args.repeats)
        print(f"cuda: {json.dumps(result['cuda'])}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Bounded memory on long inputs: infer.py's peak memory does not grow with the length of the speech.

The frames are rendered, resized and encoded batch by batch (stylization.pipeline.FrameStream into
stylization.data.video.VideoWriter), and Style-E calls its denoiser on a bounded number of windows,
so 60 s of speech may cost only what the longer coefficient, mel and audio arrays cost.
"""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, compose_train

from stylization.constants import COEFF_DIM, COEFF_SLICES, RECON_CROP_SIZE
from stylization.data.audio import SAMPLE_RATE
from stylization.data.video import probe_video

SIZE = 384  # output frames of 384 x 384 x 3 bytes = 432 KiB: 1500 of them (60 s) hold 633 MiB


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory):
    """Tiny Style-E and PIRenderer runs (the cheapest renderer: 32 px, resized to SIZE), a face photo
    and 10 s and 60 s of speech-like sound."""
    from test_pirender_stage import TINY
    from test_style_e import style_e_overrides

    from stylization.data.face_model import stand_in_face_model
    from stylization.data.synthetic.profiles import make_speaker
    from stylization.data.synthetic.render import render_face
    from stylization.engine.run import run_training

    root = tmp_path_factory.mktemp("long_audio")
    ckpt = root / "checkpoints"
    run_training(compose_train(style_e_overrides(tiny_corpus, ckpt / "style_e", max_steps=2, val_every_steps=100,
                                                 image_every_steps=0) + ["data.val_split=null", "stage.batch_size=2"]))
    trainer = ["max_steps=1", "max_minutes=null", "num_workers=0", "image_every_steps=0", "checkpoint_every_steps=1",
               "device=cpu"]
    run_training(compose_train(["stage=pirender", "model=pirender_small", f"data.root={tiny_corpus}",
                                f"trainer.run_dir={ckpt / 'pirender'}", "data.val_split=null", "stage.batch_size=1",
                                "stage.pairs_per_item=1", *TINY] + [f"trainer.{t}" for t in trainer]))
    speaker = make_speaker(0, 0)  # a synthetic-corpus face, drawn at 256 px, that the landmark detector finds
    coeffs = np.zeros((1, COEFF_DIM), np.float32)
    coeffs[:, COEFF_SLICES["id"]] = speaker.identity
    coeffs[:, COEFF_SLICES["crop"]] = (0.8 * 256 / RECON_CROP_SIZE, 0.0, 0.0)
    landmarks = stand_in_face_model().landmarks_from_coeffs(torch.from_numpy(coeffs), 256).numpy()[0]
    photo = root / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(render_face(landmarks, speaker, 256), cv2.COLOR_RGB2BGR))
    for seconds in (10, 60):
        t = np.arange(seconds * SAMPLE_RATE) / SAMPLE_RATE
        tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # syllable-like bursts
        soundfile.write(root / f"speech_{seconds}s.wav", tone.astype(np.float32), SAMPLE_RATE)
    return root


def peak_rss_mib(args: list[str], log_stem) -> tuple[int, float]:
    """Run ``python infer.py ARGS`` (one thread) as a child; returns its exit code and its own peak
    resident memory in MiB (the kernel's high-water mark, from os.wait4's resource usage)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(f"{log_stem}.out", "w") as out, open(f"{log_stem}.err", "w") as err:
        child = subprocess.Popen([sys.executable, "infer.py", *args], cwd=REPO, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return child.returncode, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_speech(runs):
    """Peak RSS of infer.py for 60 s of speech is within 20 % of that for 10 s.

    At SIZE = 384 the 1500 frames of 60 s take 633 MiB as uint8 arrays (the 250 of 10 s: 105 MiB),
    against a baseline of ~1.3 GiB (PyTorch, the models, Style-E). Holding the whole video, as
    infer.py did before frames were streamed into the encoder, measured 1483 MiB (10 s) against
    2562 MiB (60 s), +73 %; streamed, 1311 against 1323 MiB (+1 %). PIRenderer at 32 px stands in
    for Style-A (the same stream: render, resize, convert the frame rate, encode; the tiny Style-A
    takes ~20 s for 1500 frames on one CPU thread, PIRenderer ~3 s).
    """
    peaks = {}
    for seconds in (10, 60):
        out = runs / f"talk_{seconds}s.mp4"
        args = [f"checkpoints={runs / 'checkpoints'}", f"image={runs / 'photo.png'}",
                f"audio={runs / f'speech_{seconds}s.wav'}", "text=A calm voice.", "renderer=pirender",
                f"size={SIZE}", f"out={out}", "device=cpu"]
        code, peaks[seconds] = peak_rss_mib(args, runs / f"infer_{seconds}s")
        assert code == 0, (runs / f"infer_{seconds}s.err").read_text()[-3000:]
        info = probe_video(out)
        assert info.n_frames == 25 * seconds and info.width == SIZE and abs(info.audio_duration - seconds) < 0.04
        assert (runs / f"talk_{seconds}s_sheet.png").is_file()
    assert peaks[60] < 1.2 * peaks[10], f"peak RSS {peaks[10]:.0f} MiB for 10 s, {peaks[60]:.0f} MiB for 60 s"

"""infer.py without a photo: speech -> coefficients with the motion model alone, and a landmark preview."""

import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from conftest import REPO, compose_train, tiny_audio2exp_overrides

from stylization.data.video import probe_video
from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import Trainer


@pytest.fixture(scope="module")
def trained_run(tiny_corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("a2e")
    cfg = compose_train(tiny_audio2exp_overrides(tiny_corpus, run_dir, max_steps=2, image_every_steps=0))
    Trainer(cfg, build_stage(cfg), init_distributed("cpu")).fit()
    return run_dir


def infer(*args):
    return subprocess.run([sys.executable, "infer.py", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_speech_becomes_coefficients_and_video(trained_run, tiny_corpus, tmp_path):
    speech = tmp_path / "speech.wav"
    t = np.arange(44100 * 2) / 44100  # 2 s at 44.1 kHz stereo: resampled, not rejected
    tone = 0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    soundfile.write(speech, np.stack([tone, tone], -1), 44100)
    source = tiny_corpus / "clips" / "spk_c_neutral" / "coeffs.npy"
    out = tmp_path / "o" / "talk.mp4"
    res = infer(f"style_e={trained_run}", f"audio={speech}", f"source_coeffs={source}", f"out={out}", "size=64")
    assert res.returncode == 0, res.stderr[-3000:]
    coeffs = np.load(out.with_suffix(".npy"))
    assert coeffs.shape == (50, 260)
    np.testing.assert_array_equal(coeffs[:, :80], np.tile(np.load(source)[0, :80], (50, 1)))  # identity kept
    assert coeffs[:, 80:144].std(0).max() > 0  # the expression moves with the audio
    info = probe_video(out)
    assert info.n_frames == 50 and info.width == 64 and abs(info.audio_duration - info.duration) < 0.04


BAD = {"silent": ("audio is silent", 1), "missing_checkpoint": ("stage=audio2exp", 1),
       "missing_audio": ("not found", 1), "pose_without_photo": ("give a photo", 2),
       "pose_motion_without_photo": ("give a photo", 2), "text_and_text_file": ("not both", 2),
       "missing_text_file": ("text file not found", 1)}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_fail_cleanly(case, trained_run, tiny_corpus, tmp_path):
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, np.zeros(16000) if case == "silent" else 0.3 * np.sin(np.arange(16000) / 5.0), 16000)
    ckpt = tmp_path / "none" if case == "missing_checkpoint" else trained_run
    audio = tmp_path / "nope.wav" if case == "missing_audio" else speech
    out = tmp_path / "out.mp4"
    extra = {"pose_without_photo": [f"pose={tiny_corpus / 'clips' / 'spk_c_neutral' / 'coeffs.npy'}"],
             "pose_motion_without_photo": ["pose_motion=gentle"],
             "text_and_text_file": ["text=calm", f"text_file={speech}"],
             "missing_text_file": [f"text_file={tmp_path / 'none.txt'}"]}.get(case, [])
    res = infer(f"style_e={ckpt}", f"audio={audio}", f"out={out}", *extra)
    message, code = BAD[case]
    assert res.returncode == code and "Traceback" not in res.stderr, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.stderr[-2000:]
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "out.npy")


# Free text as people type it: commas (Hydra's list separator), quotes, '=', brackets, '${'.
FREE_TEXT = """The person is angry, frowning; she says "no" = 'never' [twice] ${not_a_key}"""


def test_free_text_reaches_the_config_as_typed(tmp_path):
    from omegaconf import OmegaConf

    res = infer("--cfg", "job", f"text={FREE_TEXT}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert OmegaConf.create(res.stdout).text == FREE_TEXT
    hydra_quoted = infer("--cfg", "job", "text='A man speaks slowly, frowning.'")  # Hydra's quoting still works
    assert OmegaConf.create(hydra_quoted.stdout).text == "A man speaks slowly, frowning."
    res = infer("--cfg", "job", f"text_file={tmp_path / 'a, b=c.txt'}")
    assert OmegaConf.create(res.stdout).text_file == str(tmp_path / "a, b=c.txt")


def test_style_e_run_with_an_emotion_text(tiny_corpus, tmp_path):
    from test_style_e import style_e_overrides

    run_dir = tmp_path / "se"
    cfg = compose_train(style_e_overrides(tiny_corpus, run_dir, max_steps=2, val_every_steps=100,
                                          image_every_steps=0) + ["data.val_split=null", "stage.batch_size=2"])
    Trainer(cfg, build_stage(cfg), init_distributed("cpu")).fit()
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, 0.3 * np.sin(np.arange(24000) / 7.0) * (np.arange(24000) % 8000 < 5000), 16000)
    out = tmp_path / "coeffs.mp4"
    res = infer(f"style_e={run_dir}", f"audio={speech}", f"text={FREE_TEXT}", "emotion_scale=2.0", f"out={out}",
                "preview_video=false")
    assert res.returncode == 0, res.stderr[-3000:]
    assert np.load(tmp_path / "coeffs.npy").shape == (37, 260) and not os.path.exists(out)
    # the same description from a file gives the same coefficients; another text does not
    (tmp_path / "emotion.txt").write_text(FREE_TEXT + "\n", encoding="utf-8")
    for name, text in (("from_file", f"text_file={tmp_path / 'emotion.txt'}"), ("other", "text=calm and neutral")):
        res = infer(f"style_e={run_dir}", f"audio={speech}", text, "emotion_scale=2.0", f"out={tmp_path / name}.mp4",
                    "preview_video=false")
        assert res.returncode == 0, res.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "from_file.npy"), np.load(tmp_path / "coeffs.npy"))
    assert not np.array_equal(np.load(tmp_path / "other.npy"), np.load(tmp_path / "coeffs.npy"))
    bad = infer(f"style_e={run_dir}", f"audio={speech}", "text=' '", f"out={tmp_path / 'x.mp4'}")
    assert bad.returncode == 2 and "text must be" in bad.stderr and not os.path.exists(tmp_path / "x.npy")

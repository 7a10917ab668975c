"""The synthetic corpus carries real, measurable signal (not only the right shapes)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from stylization.data.corpus import Corpus
from stylization.data.datasets import ClipWindowDataset
from stylization.data.face_model import EXPRESSION_COMPONENTS, stand_in_face_model
from stylization.data.synthetic.art import ART_STYLES, stylize
from stylization.data.synthetic.build import CorpusSpec, build_corpus
from stylization.data.synthetic.motion import MOUTH_LEAD_FRAMES, SILENCE_DBFS
from stylization.data.synthetic.sentences import sentence_bank, split_bank
from stylization.data.video import probe_video
from stylization.text.emotion_text import EMOTION_WORDS

JAW = EXPRESSION_COMPONENTS.index("jaw_open")


def frame_db(wav, n_frames):
    frames = np.pad(wav, (0, max(0, n_frames * 640 - wav.size)))[: n_frames * 640].reshape(n_frames, 640)
    return 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(1)) + 1e-9)


def test_mouth_opening_follows_the_audio(synthetic_corpus):
    corpus = Corpus(synthetic_corpus)
    correlations, silent_jaw = [], []
    for rec in corpus.records:
        jaw = corpus.load_coeffs(rec)[:, 80 + JAW]
        db = frame_db(corpus.load_audio(rec), rec.n_frames)
        envelope = np.clip(db + 60, 0, None)
        lead = np.minimum(np.arange(rec.n_frames) + MOUTH_LEAD_FRAMES, rec.n_frames - 1)
        correlations.append(np.corrcoef(jaw, envelope[lead])[0, 1])
        # frames whose whole neighbourhood (lead and smoothing included) is silent
        quiet = np.array([db[max(0, t - 1):t + MOUTH_LEAD_FRAMES + 2].max() < SILENCE_DBFS for t in range(rec.n_frames)])
        silent_jaw.extend(jaw[quiet])
    print(f"jaw_open vs audio envelope: mean correlation {np.mean(correlations):.3f}, min {np.min(correlations):.3f}")
    assert np.mean(correlations) > 0.75 and np.min(correlations) > 0.4
    assert len(silent_jaw) > 50 and np.max(np.abs(silent_jaw)) < 1e-6  # silence closes the mouth


def test_emotions_are_separable_and_levels_ordered(synthetic_corpus):
    corpus = Corpus(synthetic_corpus)
    named = len(EXPRESSION_COMPONENTS)
    feats = {r.id: corpus.load_coeffs(r)[:, 80:80 + named].mean(0) for r in corpus.records}
    ids = list(feats)
    labels = np.array([corpus.by_id[i].emotion for i in ids])
    x = np.stack([feats[i] for i in ids])
    correct = 0
    for k in range(len(ids)):  # leave-one-out nearest centroid
        keep = np.arange(len(ids)) != k
        centroids = {e: x[keep & (labels == e)].mean(0) for e in set(labels)}
        guess = min(centroids, key=lambda e: np.linalg.norm(x[k] - centroids[e]))
        correct += guess == labels[k]
    accuracy = correct / len(ids)
    print(f"nearest-centroid emotion accuracy {accuracy:.2f} (chance 0.125)")
    assert accuracy > 0.8
    for speaker in corpus.speakers():
        neutral = np.mean([feats[r.id] for r in corpus.clips(speakers=[speaker]) if r.emotion == "neutral"], 0)
        for emotion in ("happy", "angry", "sad", "surprised", "fear", "disgusted", "contempt"):
            dist = [np.linalg.norm(feats[f"{speaker}_{emotion}_{lvl}_000"] - neutral) for lvl in (1, 2, 3)]
            assert dist[0] < dist[1] < dist[2], (speaker, emotion, dist)


def test_same_seed_gives_identical_arrays_and_test_sentences_are_unseen(synthetic_corpus, tmp_path):
    again = tmp_path / "again"
    build_corpus(CorpusSpec(out=str(again), speakers=1, clips=1, seconds=2.0, resolution=64, workers=1,
                            emotions=("happy",), levels=(3,), styles=("cel",), art_references=1))
    clip = "S000_happy_3_000"
    for name in ("coeffs.npy", "landmarks.npy", "audio.wav", "sentence.txt"):
        assert (again / "clips" / clip / name).read_bytes() == (synthetic_corpus / "clips" / clip / name).read_bytes()
    corpus = Corpus(synthetic_corpus)
    spoken = {r.split: set() for r in corpus.records}
    for r in corpus.records:
        spoken[r.split].add((synthetic_corpus / "clips" / r.id / "sentence.txt").read_text().strip())
    assert spoken["test"] and not spoken["test"] & spoken["train"]
    train, test = split_bank()
    assert spoken["test"] <= set(test) and spoken["train"] <= set(train)
    assert len(sentence_bank()) >= 200 and not set(train) & set(test)
    assert corpus.speakers("test") == ["S002"] and "S002" not in corpus.speakers("train")


def test_corpus_loads_and_landmarks_are_the_projection(synthetic_corpus):
    corpus = Corpus(synthetic_corpus)
    fm = stand_in_face_model()
    for rec in corpus.records[::7]:
        coeffs = corpus.load_coeffs(rec)
        expected = fm.landmarks_from_coeffs(torch.from_numpy(coeffs), 64).numpy()
        np.testing.assert_allclose(corpus.load_landmarks(rec), expected, atol=1e-4)
        info = probe_video(synthetic_corpus / rec.files["video"])
        assert info.n_frames == rec.n_frames and info.fps == 25 and info.width == 64
        assert probe_video(synthetic_corpus / rec.files["style_cel"]).n_frames == rec.n_frames
    ds = ClipWindowDataset(synthetic_corpus, split="train", window_frames=32, with_frames=True)
    item = ds[0]
    assert item["frames"].shape == (32, 3, 64, 64) and item["mel"].shape == (32, 1, 80, 16)
    assert len(ClipWindowDataset(synthetic_corpus, split="test", window_frames=32, with_mel=False)) > 0


def test_texts_describe_the_emotion(synthetic_corpus):
    for rec in Corpus(synthetic_corpus).records:
        assert len(set(rec.texts)) >= 5
        words = [w for kind in EMOTION_WORDS[rec.emotion].values() for w in kind]
        assert all(any(w in t for w in words) for t in rec.texts), rec.texts
    happy = [r for r in Corpus(synthetic_corpus).records if r.emotion == "happy" and r.level == 3][0]
    assert any("smile" in t or "lip corners" in t or "mouth corners" in t or "cheeks" in t for t in happy.texts)


def test_art_references_and_previews(synthetic_corpus):
    refs = json.loads((synthetic_corpus / "art" / "index.json").read_text())
    assert set(refs) == {"cel", "pixel_art"} and all(len(v) == 2 for v in refs.values())
    assert all((synthetic_corpus / p).is_file() for v in refs.values() for p in v)
    assert (synthetic_corpus / "preview.png").stat().st_size > 1000
    info = probe_video(synthetic_corpus / "preview.mp4")
    assert info.width == 3 * 64 and info.audio_duration is not None


def test_styles_are_distinct_and_deterministic():
    rng = np.random.default_rng(0)
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = (200, 150, 120)
    img[28:36, 20:44] = (150, 40, 50)
    img = np.clip(img.astype(int) + rng.integers(0, 10, img.shape), 0, 255).astype(np.uint8)
    outs = {s: stylize(img, s) for s in ART_STYLES}
    for s, out in outs.items():
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() > 5, s
        assert np.array_equal(out, stylize(img, s))
    names = list(outs)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert np.abs(outs[names[i]].astype(int) - outs[names[j]]).mean() > 5, (names[i], names[j])
    with pytest.raises(ValueError, match="unknown art style"):
        stylize(img, "cubism")


def test_make_corpus_refuses_to_overwrite(synthetic_corpus):
    out = subprocess.run([sys.executable, "scripts/make_corpus.py", f"out={synthetic_corpus}"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "overwrite=true" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "scripts/make_corpus.py", "out=/tmp/x", "styles=[cubism]"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 2 and "cubism" in out.stderr


def test_motion_habits_differ_between_speakers_and_leave_the_rest_alone():
    """motion_styles scales the speakers' motion habits (0: all alike, as before they existed); the
    habits come from their own random stream, so a speaker's face, voice and colours do not change."""
    from stylization.data.synthetic.profiles import MAX_NOD, MOTION_HABITS, make_speaker, motion_habits

    assert motion_habits(3, 0, strength=0.0) == {"jaw_gain": 1.0, "blink_factor": 1.0, "sway_tempo": 1.0, "nod_gain": 0.0}
    habits = [motion_habits(i, 0) for i in range(8)]
    for name, (lo, hi) in MOTION_HABITS.items():
        values = [h[name] for h in habits]
        assert all(lo <= v <= hi for v in values) and len(set(values)) == 8
    assert all(0 <= h["nod_gain"] <= MAX_NOD for h in habits)
    half = motion_habits(3, 0, strength=0.5)["jaw_gain"]
    assert half == pytest.approx(habits[3]["jaw_gain"] ** 0.5)  # geometric interpolation
    alike, styled = make_speaker(3, 0, motion_styles=0.0), make_speaker(3, 0)
    assert np.array_equal(alike.identity, styled.identity) and alike.voice == styled.voice and alike.skin == styled.skin
    assert alike.jaw_gain == 1.0 and styled.jaw_gain == habits[3]["jaw_gain"]

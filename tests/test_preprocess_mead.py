"""scripts/preprocess.py on a fake MEAD tree made from a synthetic corpus (whose landmarks are known):
30 fps videos with m4a audio in MEAD's layout, a few damaged clips, a run killed halfway and
resumed, and what comes out (frame counts, alignment, landmark error, splits, texts, training)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stylization.constants import FPS, SAMPLES_PER_FRAME
from stylization.data.corpus import Corpus, read_index
from stylization.data.video import _encode_audio, probe_video, read_video, resample_indices, write_video

ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = {"S000": "M003", "S001": "M005", "S002": "W009"}  # M003 and W009: EDTalk's MEAD test speakers
CANVAS, OFFSET = (288, 352), (40, 16)  # (H, W) of the raw frames; where the corpus frame sits (x, y)


def write_m4a(path: Path, audio: np.ndarray) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="ipod") as container:
        stream = container.add_stream("aac", rate=48000)
        stream.layout = "mono"
        _encode_audio(container, stream, audio, 16000, len(audio) / 16000)


def to_30fps(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """25 fps frames placed on the raw canvas, at 30 fps -> (frames, the 25 fps index of each)."""
    idx = resample_indices(np.arange(len(frames)) / FPS, FPS, 30)
    canvas = np.full((len(idx), *CANVAS, 3), 90, np.uint8)
    h, w = frames.shape[1:3]
    canvas[:, OFFSET[1]:OFFSET[1] + h, OFFSET[0]:OFFSET[0] + w] = frames[idx]
    return canvas, idx


@pytest.fixture(scope="module")
def mead_tree(tmp_path_factory):
    """(raw MEAD tree, the source corpus, {clip id: (corpus clip, 30 fps -> 25 fps index)}, damaged ids)."""
    from stylization.data.synthetic.build import CorpusSpec, build_corpus

    base = tmp_path_factory.mktemp("mead")
    corpus_root = base / "corpus"
    build_corpus(CorpusSpec(out=str(corpus_root), speakers=3, clips=1, seconds=1.2, resolution=256, workers=2,
                            emotions=("neutral", "happy", "sad", "angry"), levels=(3,), styles=("cel",),
                            art_references=1, test_speakers=1))
    corpus = Corpus(corpus_root)
    raw = base / "raw"
    truth = {}
    for rec in corpus.records:
        spk = SPEAKERS[rec.speaker]
        n = len([k for k in truth if k.startswith(f"{spk}#{rec.emotion}#level_{rec.level}#")])
        clip_id = f"{spk}#{rec.emotion}#level_{rec.level}#{n + 1:03d}"
        frames30, idx = to_30fps(read_video(corpus.path(rec, "video")))
        write_video(raw / spk / "video" / "front" / rec.emotion / f"level_{rec.level}" / f"{n + 1:03d}.mp4",
                    frames30, fps=30)
        write_m4a(raw / spk / "audio" / rec.emotion / f"level_{rec.level}" / f"{n + 1:03d}.m4a", corpus.load_audio(rec))
        truth[clip_id] = (rec, idx)
    # damage: a truncated video, a missing audio file, a clip shorter than a window, a video without a face
    rec = corpus.records[0]
    frames30, _ = to_30fps(read_video(corpus.path(rec, "video")))
    damaged = {}
    video = raw / "M005/video/front/fear/level_1"
    write_video(video / "001.mp4", frames30, fps=30)
    data = (video / "001.mp4").read_bytes()
    (video / "001.mp4").write_bytes(data[: len(data) // 3])
    write_m4a(raw / "M005/audio/fear/level_1/001.m4a", corpus.load_audio(rec))
    damaged["M005#fear#level_1#001"] = "not a readable video"
    write_video(video / "002.mp4", frames30, fps=30)  # no audio file
    damaged["M005#fear#level_1#002"] = "audio"
    write_video(video / "003.mp4", frames30[:24], fps=30)  # 20 frames at 25 fps
    write_m4a(raw / "M005/audio/fear/level_1/003.m4a", corpus.load_audio(rec)[: 20 * SAMPLES_PER_FRAME])
    damaged["M005#fear#level_1#003"] = "shorter than"
    noise = np.random.default_rng(0).integers(0, 255, (40, *CANVAS, 3), dtype=np.uint8)
    write_video(video / "004.mp4", noise, fps=30)
    write_m4a(raw / "M005/audio/fear/level_1/004.m4a", corpus.load_audio(rec))
    damaged["M005#fear#level_1#004"] = "no face found"
    return raw, corpus, truth, damaged


# A tiny VToonify-D teacher (random weights in the official files' structure) for the art pass.
TINY_ART_MODEL = ["model.generator.in_size=32", "model.generator.out_size=128", "model.generator.style_dim=16",
                  "model.generator.channel_multiplier=1", "model.generator.channel_cap=16", "model.psp.z_plus=false",
                  "model.psp.decoder=false", "model.psp.input_size=64",
                  "+model.psp.encoder_blocks=[[16,16,1],[16,16,1],[16,16,1],[16,16,1]]", "model.parsing=landmarks",
                  "model.identity_alignment=crop"]
ART_KEYS = ("cartoon/026.jpg", "arcane/077.jpg", "pixar/001.jpg")


@pytest.fixture(scope="module")
def art_overrides(tmp_path_factory):
    """Official-structure files of a tiny VToonify-D, pSp and exstyle codes -> preprocess overrides."""
    import torch

    from stylization.style_a.psp import PSP
    from stylization.style_a.vtoonify import VToonifyD

    folder = tmp_path_factory.mktemp("vtoonify")
    torch.manual_seed(5)
    teacher = VToonifyD(in_size=32, out_size=128, style_dim=16, channel_multiplier=1, channel_cap=16)
    torch.save({"g_ema": teacher.state_dict()}, folder / "vtoonify_s_d.pt")
    psp = PSP(128, z_plus=False, decoder=False, style_dim=16, input_size=64,
              encoder_blocks=[[16, 16, 1]] * 4)
    state = {k: v for k, v in psp.state_dict().items() if k != "latent_avg"}
    torch.save({"state_dict": state, "latent_avg": torch.randn(16)}, folder / "encoder.pt")
    rng = np.random.default_rng(5)
    np.save(folder / "exstyle_code.npy", {k: rng.standard_normal((1, 12, 16)).astype(np.float32) for k in ART_KEYS},
            allow_pickle=True)
    return ["art.targets=true", f"art.vtoonify={folder / 'vtoonify_s_d.pt'}", f"art.psp={folder / 'encoder.pt'}",
            f"art.exstyle_codes={folder / 'exstyle_code.npy'}", "art.references=2", *TINY_ART_MODEL]


def preprocess_command(raw, out, *extra):
    return [sys.executable, str(ROOT / "scripts" / "preprocess.py"), "dataset=mead", f"raw={raw}", f"out={out}",
            "workers=2", "clip_model=tiny", *extra]


@pytest.fixture(scope="module")
def processed(mead_tree, art_overrides, tmp_path_factory):
    """The tree preprocessed by a run killed once about a third of the clips were done, then resumed
    (with the art pass of a tiny VToonify-D)."""
    raw, _, truth, _ = mead_tree
    out = tmp_path_factory.mktemp("processed") / "mead"
    first = subprocess.Popen(preprocess_command(raw, out, *art_overrides), cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        if len(list(out.glob("clips/*/record.json"))) >= len(truth) // 3:
            os.killpg(first.pid, signal.SIGKILL)  # the run and its workers, mid-clip
            break
        time.sleep(0.2)
    first.wait()
    done_before = len(list(out.glob("clips/*/record.json")))
    second = subprocess.run(preprocess_command(raw, out, *art_overrides), cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    return out, json.loads(second.stdout.strip().splitlines()[-1]), done_before


def test_the_run_resumes_and_reports_every_damaged_clip(mead_tree, processed, art_overrides):
    raw, _, truth, damaged = mead_tree
    out, summary, done_before = processed
    assert 0 < done_before < len(truth)  # it was killed halfway
    records = read_index(out)
    ids = [r.id for r in records]
    assert sorted(ids) == sorted(truth) and len(set(ids)) == len(ids)
    assert summary["clips"] == len(truth) and summary["failed"] == len(damaged)
    assert summary["frames"] == sum(r.n_frames for r in records) and summary["seconds"] > 0
    assert summary["skipped_done"] >= done_before
    assert not list(out.glob(".partial/*"))
    corpus = Corpus(out)
    assert all(corpus.check_clip(r) is None for r in records)
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert {f["id"]: f["reason"] for f in failures}.keys() == damaged.keys()
    for f in failures:
        assert damaged[f["id"]] in f["reason"], f
    # a third run has nothing left to do (failures are not retried unless asked)
    again = subprocess.run(preprocess_command(raw, out, *art_overrides), cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    last = json.loads(again.stdout.strip().splitlines()[-1])
    assert last["processed"] == 0 and last["skipped_failed"] == len(damaged) and last["clips"] == len(truth)
    assert last["art_videos"] == 0 and last["art_clips_done_before"] == len(truth)  # the art pass resumes too


def test_art_targets_one_style_per_clip_and_references(processed):
    from stylization.preprocess.art_targets import choose_styles, style_name

    out, summary, _ = processed
    names = sorted(style_name(k) for k in ART_KEYS)
    assert summary["art_failed"] == 0 and summary["art_styles"] >= 1
    records = read_index(out)
    for rec in records:
        styles = [k[len("style_"):] for k in rec.files if k.startswith("style_")]
        assert styles == choose_styles(rec.id, names, 1, 0)  # one style per clip, drawn from its id and the seed
    index = json.loads((out / "art" / "index.json").read_text())
    assert set(index) <= set(names) and all(1 <= len(v) <= 2 for v in index.values())
    rec = records[0]
    styled = read_video(Corpus(out).path(rec, next(k for k in rec.files if k.startswith("style_"))))
    assert styled.shape == (rec.n_frames, 128, 128, 3)  # the teacher's output size, every frame


def test_frames_audio_and_landmarks_match_the_source(mead_tree, processed):
    _, corpus, truth, _ = mead_tree
    out, _, _ = processed
    from stylization.preprocess.tracking import crop_matrix, transform_points

    errors, same = [], []
    for rec in read_index(out):
        source, idx30 = truth[rec.id]
        raw_n = len(idx30)
        back = resample_indices(np.arange(raw_n) / 30, 30, FPS)  # 30 fps -> 25 fps, as the reader does
        assert rec.n_frames == len(back) == source.n_frames
        info = probe_video(Corpus(out).path(rec, "video"))
        assert (info.width, info.height) == (256, 256) and info.fps == pytest.approx(FPS)
        audio = Corpus(out).load_audio(rec)
        assert abs(len(audio) / SAMPLES_PER_FRAME - rec.n_frames) < 1
        meta = json.loads((out / "clips" / rec.id.replace("#", "_") / "record.json").read_text())
        m = crop_matrix(tuple(meta["crop_box"]), 256)
        known = corpus.load_landmarks(source)[idx30[back]] + np.array(OFFSET, np.float32)
        found = Corpus(out).load_landmarks(rec)
        errors.append(np.abs(found - transform_points(known, m)).mean(-1))  # [T, 68] px of the 256 crop
        if "phonemes" in source.files:  # recognised here, force-aligned to the known sentence in the source
            same.append(Corpus(out).load_phonemes(rec) == corpus.load_phonemes(source)[idx30[back]])
    errors = np.concatenate(errors)
    agreement = float(np.concatenate(same).mean())
    print("phonemes recognised in the processed clips, frames agreeing with the source's alignment:", agreement)
    assert len(same) >= 8 and agreement > 0.4
    groups = {name: round(float(errors[:, sl].mean()), 2) for name, sl in
              (("jaw", slice(0, 17)), ("brows", slice(17, 27)), ("nose", slice(27, 36)), ("eyes", slice(36, 48)),
               ("mouth", slice(48, 68)), ("all", slice(0, 68)))}
    print("landmark error, px of the 256 crop:", groups)
    # Measured (docs/results.md): all 68 points 1.6 px, mouth and eyes about 1.1 px. Nearly all of
    # it is a constant offset per clip where dlib's 68-point convention and the drawn face disagree,
    # not the tracking, cropping or resampling.
    assert groups["mouth"] < 2.0 and groups["eyes"] < 2.0, groups
    assert groups["all"] < 2.0, groups


def test_splits_and_texts(processed):
    out, summary, _ = processed
    records = read_index(out)
    assert {r.speaker for r in records if r.split == "test"} == {"M003", "W009"}
    assert summary["splits"] == {"test": 8, "train": 4}
    happy = [r for r in records if r.emotion == "happy"]
    words = ("happ", "smil", "cheer", "joy", "delight", "glad")
    assert all(len(r.texts) == 5 for r in records)
    assert all(any(w in " ".join(r.texts).lower() for w in words) for r in happy)
    inspect = subprocess.run([sys.executable, str(ROOT / "scripts" / "inspect_corpus.py"), str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert json.loads(inspect.stdout.strip().splitlines()[-1]) == {"clips": 12, "speakers": 3, "damaged": 0,
                                                                   "short": 0, "speaker_disjoint": True}


def test_style_a_trains_on_the_result(processed, tmp_path):
    out, _, _ = processed
    run = subprocess.run([sys.executable, "train.py", "stage=style_a", "model=style_a_small", f"data.root={out}",
                          f"trainer.run_dir={tmp_path / 'run'}", "trainer.max_steps=2", "trainer.max_minutes=null",
                          "data.val_split=null", "stage.batch_size=2", "trainer.num_workers=0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list((tmp_path / "run" / "checkpoints").glob("step_*.pt"))


def test_style_e_trains_on_the_result(processed, tmp_path):
    out, _, _ = processed
    run = subprocess.run([sys.executable, "train.py", "stage=style_e", "model=style_e_small", "data=mead",
                          f"data.root={out}", "data.face_model=stand_in", f"trainer.run_dir={tmp_path / 'run'}",
                          "trainer.max_steps=2", "trainer.max_minutes=null", "data.val_split=null", "stage.batch_size=4"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert list((tmp_path / "run" / "checkpoints").glob("step_*.pt"))

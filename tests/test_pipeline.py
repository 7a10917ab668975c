"""infer.py end to end: photo + speech + text + art -> video, batch mode, and every bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch
from conftest import REPO, compose_train

from stylization.data.audio import SAMPLE_RATE, n_video_frames
from stylization.data.corpus import Corpus
from stylization.data.video import probe_video, read_video
from stylization.pipeline import (
    FrameStream,
    contact_sheet,
    resample_batches,
    resample_frames,
    sheet_frame_indices,
    write_outputs,
)


@pytest.fixture(scope="module")
def demo_inputs(synthetic_corpus, tmp_path_factory):
    """Tiny Style-E and Style-A runs under checkpoints/{style_e,style_a}, and the inputs of a tuple."""
    from test_style_a import style_a_overrides
    from test_style_e import style_e_overrides

    from stylization.engine.run import run_training

    root = tmp_path_factory.mktemp("infer")
    ckpt = root / "checkpoints"
    run_training(compose_train(style_e_overrides(synthetic_corpus, ckpt / "style_e", max_steps=2, val_every_steps=100,
                                                 image_every_steps=0) + ["data.val_split=null", "stage.batch_size=2"]))
    run_training(compose_train(style_a_overrides(synthetic_corpus, ckpt / "style_a", 2, ["data.val_split=null"])))
    corpus = Corpus(synthetic_corpus)
    frame = read_video(corpus.path(corpus.clips("test")[0], "video"))[0]
    photo = root / "photo.png"
    cv2.imwrite(str(photo), cv2.cvtColor(cv2.resize(frame, (256, 256), interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2BGR))
    speech = root / "speech.wav"
    t = np.arange(int(44100 * 1.3)) / 44100  # 1.3 s, 44.1 kHz stereo: resampled, not rejected
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    soundfile.write(speech, np.stack([tone, 0.5 * tone], -1), 44100)
    art = synthetic_corpus / "art" / "pixel_art" / "ref_0.png"
    return {"checkpoints": ckpt, "image": photo, "audio": speech, "art": art, "root": root}


def infer(*args):
    return subprocess.run([sys.executable, "infer.py", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def tuple_args(inputs, out, **changes):
    args = {"checkpoints": inputs["checkpoints"], "image": inputs["image"], "audio": inputs["audio"],
            "text": "A woman speaks with a broad smile.", "art": inputs["art"], "out": out, "device": "cpu"}
    args.update(changes)
    return [f"{k}={v}" for k, v in args.items() if v is not None]


def test_a_tuple_becomes_a_video(demo_inputs, tmp_path):
    out = tmp_path / "result" / "talk.mp4"
    res = infer(*tuple_args(demo_inputs, out, pose_motion="gentle"))
    assert res.returncode == 0, res.stderr[-3000:]
    frames = n_video_frames(int(1.3 * SAMPLE_RATE))
    info = probe_video(out)
    assert info.n_frames == frames and info.fps == 25 and info.width == 128
    assert info.audio_duration is not None and abs(info.audio_duration - info.duration) < 0.04
    coeffs = np.load(out.with_suffix(".npy"))
    assert coeffs.shape == (frames, 260) and coeffs[:, 224:227].std(0).max() > 0  # the gentle pose moves
    sheet = cv2.imread(str(tmp_path / "result" / "talk_sheet.png"))
    assert sheet.shape == (3 * 128, 4 * 128, 3)
    assert "timings:" in res.stdout and "Style-A + outputs" in res.stdout  # rendered and encoded as one stream


def test_batch_mode_skips_failed_rows(demo_inputs, tmp_path):
    rows = tmp_path / "tuples.csv"
    good, bad = tmp_path / "a.mp4", tmp_path / "b.mp4"
    rows.write_text("image,audio,out,art_style\n"
                    f"{demo_inputs['image']},{demo_inputs['audio']},{good},\n"
                    f"{demo_inputs['image']},{tmp_path / 'missing.wav'},{bad},\n")
    res = infer(f"checkpoints={demo_inputs['checkpoints']}", f"batch={rows}", f"art={demo_inputs['art']}",
                "device=cpu", "sheet=false")
    assert res.returncode == 1
    assert "1 of 2 rows rendered" in res.stdout and "row 2" in res.stderr and "missing.wav" in res.stderr
    assert good.is_file() and not bad.exists()


def write_bad_input(case: str, inputs: dict, tmp: str) -> dict:
    """The argument changes for one bad-input case (files written under tmp)."""
    tmp = os.fspath(tmp)
    if case == "unreadable_photo":
        path = os.path.join(tmp, "photo.png")
        open(path, "w").write("not a picture")
        return {"image": path}
    if case == "no_face":
        path = os.path.join(tmp, "wall.png")
        cv2.imwrite(path, np.full((256, 256, 3), 128, np.uint8))
        return {"image": path}
    if case in ("empty_audio", "silent_audio"):
        path = os.path.join(tmp, "speech.wav")
        soundfile.write(path, np.zeros(0 if case == "empty_audio" else 16000, np.float32), 16000)
        return {"audio": path}
    if case == "corrupt_pose_video":
        path = os.path.join(tmp, "pose.mp4")
        open(path, "wb").write(os.urandom(2000))
        return {"pose": path}
    if case == "empty_text":
        return {"text": "' '"}
    if case == "overlong_text":
        return {"text": "'" + "very " * 80 + "happy'"}
    if case == "missing_checkpoint":
        return {"checkpoints": os.path.join(tmp, "nowhere")}
    if case == "unwritable_output":
        blocker = os.path.join(tmp, "file")
        open(blocker, "w").write("")
        return {"out": os.path.join(blocker, "out.mp4")}
    raise ValueError(case)


EXPECTED = {"unreadable_photo": ("not a readable photo", 1), "no_face": ("no face found", 1),
            "empty_audio": ("audio", 1), "silent_audio": ("audio is silent", 1),
            "corrupt_pose_video": ("pose.mp4", 1), "empty_text": ("text must be", 2),
            "overlong_text": ("text must be", 2), "missing_checkpoint": ("train one with", 1),
            "unwritable_output": ("output folder", 1)}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_bad_input_fails_in_one_line_and_leaves_nothing(case, demo_inputs, tmp_path):
    out = tmp_path / "out" / "talk.mp4"
    changes = write_bad_input(case, demo_inputs, tmp_path)
    res = infer(*tuple_args(demo_inputs, changes.pop("out", out), **changes))
    message, code = EXPECTED[case]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == code, res.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    leftovers = [p for p in (out, out.with_suffix(".npy"), tmp_path / "out" / "talk_sheet.png") if p.exists()]
    assert not leftovers


def test_several_faces_use_the_largest(demo_inputs, tmp_path):
    photo = cv2.imread(str(demo_inputs["image"]))
    small = cv2.resize(photo, (160, 160), interpolation=cv2.INTER_AREA)
    canvas = np.full((300, 460, 3), 200, np.uint8)
    canvas[20:276, 0:256] = photo
    canvas[70:230, 290:450] = small
    path = tmp_path / "two.png"
    cv2.imwrite(str(path), canvas)
    out = tmp_path / "two.mp4"
    res = infer(*tuple_args(demo_inputs, out, image=path, sheet="false", save_coeffs="false"))
    assert res.returncode == 0, res.stderr[-2000:]
    # a warning goes to stderr, where a user who redirects the video log (stdout) still sees it
    assert "WARNING: " in res.stderr and "2 faces found; using the largest" in res.stderr
    assert "faces found" not in res.stdout and "wrote" in res.stdout and out.is_file()


def test_small_helpers():
    frames = np.arange(50)[:, None, None, None].repeat(2, 1).astype(np.uint8)
    assert len(resample_frames(frames, 30)) == 60 and len(resample_frames(frames, 25)) == 50
    sheet = contact_sheet([np.zeros((64, 64, 3), np.uint8)], np.zeros((10, 32, 32, 3), np.uint8))
    assert sheet.shape == (96, 128, 3)


def numbered(n: int, size: int = 8) -> np.ndarray:
    """Frames uint8 [n, size, size, 3] whose pixels hold their index (mod 256)."""
    return np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, size, size, 3)).copy()


@pytest.mark.parametrize("fps", [25, 30, 12, 50])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_the_stream_gives_the_frames_and_sheet_of_the_whole_video(fps, batch):
    """Frame-rate conversion and the contact sheet on a stream of batches give what they give on the
    whole video (the sheet's frames are chosen from the known length and kept as they pass)."""
    video = numbered(101)
    batches = (video[s:s + batch] for s in range(0, len(video), batch))
    whole = resample_frames(video, fps)
    kept: list[np.ndarray] = []
    stream = FrameStream(resample_batches(batches, len(video), fps), len(whole))
    streamed = np.concatenate(list(stream.read(sheet_frame_indices(stream.n_frames), kept)))
    np.testing.assert_array_equal(streamed, whole)
    inputs = [np.full((16, 16, 3), 9, np.uint8)]
    np.testing.assert_array_equal(contact_sheet(inputs, np.stack(kept)), contact_sheet(inputs, whole))
    few = numbered(5)  # shorter than the sheet: every frame, then blank tiles
    np.testing.assert_array_equal(contact_sheet(inputs, few[sheet_frame_indices(5)]), contact_sheet(inputs, few))


def test_outputs_are_all_or_nothing_with_a_stream(tmp_path):
    """A renderer failing mid-video, or giving fewer frames than announced, leaves no video, .npy, sheet
    or temporary file; a stream that completes writes the three."""
    wav = 0.1 * np.sin(np.arange(16000, dtype=np.float32))
    coeffs = np.zeros((25, 260), np.float32)

    def failing():
        yield numbered(8)
        raise RuntimeError("renderer crashed")

    for batches, n_frames, error in ((failing(), 25, "renderer crashed"), (iter([numbered(8)]), 25, "8 frames, 25")):
        kept: list[np.ndarray] = []
        stream = FrameStream(batches, n_frames)
        with pytest.raises(RuntimeError, match=error):
            write_outputs(str(tmp_path / "talk.mp4"), stream.read(sheet_frame_indices(n_frames), kept), wav, 25,
                          coeffs, lambda: contact_sheet([], np.stack(kept)))
        assert os.listdir(tmp_path) == []
    kept = []
    stream = FrameStream(iter([numbered(10), numbered(15)]), 25)
    written = write_outputs(str(tmp_path / "talk.mp4"), stream.read(sheet_frame_indices(25), kept), wav, 25, coeffs,
                            lambda: contact_sheet([], np.stack(kept)))
    assert sorted(os.listdir(tmp_path)) == ["talk.mp4", "talk.npy", "talk_sheet.png"] and len(written) == 3
    assert probe_video(tmp_path / "talk.mp4").n_frames == 25


def test_the_benchmark_protocol_generates_every_row(demo_inputs, synthetic_corpus, tmp_path):
    """scripts/generate_benchmark.py: per test clip, the stylised ground truth with its sound, our
    pipeline's video (self-driven: first frame, the clip's audio, pose and text, its style's picture),
    the still and GT+shift baselines; a second run skips what exists; benchmark.py scores a row."""
    import json

    out = tmp_path / "bench"
    args = [sys.executable, "scripts/generate_benchmark.py", f"data.root={synthetic_corpus}", f"out={out}",
            f"checkpoints={demo_inputs['checkpoints']}", "max_clips=2", "device=cpu"]
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["generated"] == 2
    corpus = Corpus(synthetic_corpus)
    clips = corpus.clips("test")[:2]
    styles = sorted(k[len("style_"):] for k in clips[0].files if k.startswith("style_"))
    for i, rec in enumerate(clips):
        truth = read_video(corpus.path(rec, f"style_{styles[i % len(styles)]}"))  # styles in turn
        gt = read_video(out / "gt" / f"{rec.id}.mp4")
        assert len(gt) == len(truth) and np.abs(gt.astype(int) - truth.astype(int)).mean() < 4  # re-encoded
        assert probe_video(out / "gt" / f"{rec.id}.mp4").audio_duration > 0  # the clip's own sound
        still, shifted = read_video(out / "still" / f"{rec.id}.mp4"), read_video(out / "gt_shift" / f"{rec.id}.mp4")
        assert len(still) == len(shifted) == len(gt)
        assert np.abs(still[-1].astype(int) - gt[0].astype(int)).mean() < 4
        assert np.abs(shifted[5:].astype(int) - gt[:-5].astype(int)).mean() < 4  # lags by 5 frames
        ours = read_video(out / "style2talker" / f"{rec.id}.mp4")
        assert abs(len(ours) - len(gt)) <= 1
    again = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 2
    score = subprocess.run([sys.executable, "scripts/benchmark.py", f"gen={out / 'still'}", f"gt={out / 'gt'}",
                            f"out={tmp_path / 'still.json'}", "metrics=[ssim,psnr]", "method=still"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert score.returncode == 0, score.stderr[-2000:]
    result = json.loads((tmp_path / "still.json").read_text())
    assert result["clips"] == 2 and result["config"]["method"] == "still" and 0 < result["aggregate"]["ssim"] < 1


def test_photo_real_rendering_with_pirender(demo_inputs, synthetic_corpus, tmp_path):
    """renderer=pirender: a pirender run renders the photo (no art picture needed) at its own size;
    the timings name it."""
    from test_pirender_stage import TINY

    from stylization.engine.run import run_training

    run_dir = demo_inputs["root"] / "pirender"
    trainer = ["max_steps=2", "num_workers=0", "image_every_steps=0", "checkpoint_every_steps=2", "device=cpu"]
    run_training(compose_train(["stage=pirender", "model=pirender_small", f"data.root={synthetic_corpus}",
                                f"trainer.run_dir={run_dir}", "data.val_split=null", "stage.batch_size=1",
                                "stage.pairs_per_item=1", *TINY] + [f"trainer.{t}" for t in trainer]))
    out = tmp_path / "real.mp4"
    res = infer(*tuple_args(demo_inputs, out, art=None, renderer="pirender", pirender=run_dir, sheet="false"))
    assert res.returncode == 0, res.stderr[-3000:]
    info = probe_video(out)
    assert info.n_frames == n_video_frames(int(1.3 * SAMPLE_RATE)) and info.width == 32  # the run's image_size
    assert "PIRenderer + outputs" in res.stdout and "Style-A" not in res.stdout


def test_mode_edit_restyles_a_talking_video(demo_inputs, synthetic_corpus, tmp_path):
    """mode=edit (SAAS's video-driven editing): a saas_edit run restyles a talking video with a style
    clip; the output keeps the video's length and sound. Misuse fails in one line."""
    from stylization.data.video import write_video

    run_dir = saas_edit_run(demo_inputs, synthetic_corpus)
    log = (run_dir / "train.log").read_text()
    assert all(term in log for term in ("codebook_recon=", "cycle=", "recon_exp=", "mouth=")), log[-2000:]
    corpus = Corpus(synthetic_corpus)
    clips = corpus.clips("test")
    video = tmp_path / "talk.mp4"
    frames = read_video(corpus.path(clips[0], "video"))[:12]
    wav = corpus.load_audio(clips[0])[: 12 * SAMPLE_RATE // 25]
    write_video(video, frames, 25, wav)
    style = corpus.path(clips[-1], "coeffs")
    out = tmp_path / "edited.mp4"
    res = infer("mode=edit", f"video={video}", f"style_clip={style}", f"saas_edit={run_dir}",
                *tuple_args(demo_inputs, out, image=None, audio=None, text=None))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "SAAS edit" in res.stdout
    info = probe_video(out)
    assert info.n_frames == 12 and info.audio_duration is not None
    coeffs = np.load(out.with_suffix(".npy"))
    assert coeffs.shape == (12, 260)
    bad = infer("mode=edit", f"video={video}", f"saas_edit={run_dir}", *tuple_args(demo_inputs, tmp_path / "x.mp4",
                                                                                    image=None, audio=None, text=None))
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error:")
    assert "style_clip" in bad.stderr and not (tmp_path / "x.mp4").exists()
    res = subprocess.run([sys.executable, "scripts/eval_motion.py", f"run={run_dir}", f"data.root={synthetic_corpus}",
                          "split=test", "device=cpu", "max_clips=1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    scores = json.loads(res.stdout.strip().splitlines()[-1])
    assert scores["clips"] == 1 and all(k in scores for k in ("m_lmd", "f_lmd", "still_f_lmd", "audio_only_m_lmd"))


def saas_edit_run(demo_inputs, synthetic_corpus) -> Path:
    """A two-step saas_edit run on the corpus (one codebook step, one generator step), made once."""
    from stylization.engine.run import run_training

    run_dir = demo_inputs["root"] / "saas_edit"
    if not (run_dir / "checkpoints").is_dir():
        run_training(compose_train([
            "stage=saas_edit", "model=saas_edit_small", f"data.root={synthetic_corpus}", f"trainer.run_dir={run_dir}",
            "stage.batch_size=2", "trainer.max_steps=2", "stage.codebook_steps=1", "data.val_split=null",
            "trainer.checkpoint_every_steps=2", "trainer.log_every_steps=1", "model.codebook.dim=32",
            "model.codebook.heads=2", "model.codebook.ffn=48", "model.codebook.layers=1", "model.codebook.n_codes=16",
            "model.generator.style_dim=32", "model.generator.latent_dim=8", "trainer.num_workers=0", "trainer.device=cpu",
            "trainer.image_every_steps=0"]))
    return run_dir


def test_poses_generated_from_the_speech(demo_inputs, synthetic_corpus, tmp_path):
    """pose=audio: a saas_pose run (style codes from a saas_edit run's encoder) moves the head from the
    speech: the pose track starts at the photo's and varies over time, and another seed samples other
    poses."""
    from hydra import compose, initialize_config_dir

    from stylization.constants import COEFF_SLICES
    from stylization.data.audio import load_audio
    from stylization.engine.run import run_training
    from stylization.pipeline import Job, Pipeline

    pose_run = demo_inputs["root"] / "saas_pose"
    run_training(compose_train([
        "stage=saas_pose", "model=saas_pose_small", f"data.root={synthetic_corpus}", f"trainer.run_dir={pose_run}",
        f"stage.codebook={saas_edit_run(demo_inputs, synthetic_corpus)}", "stage.batch_size=2", "trainer.max_steps=2",
        "stage.codebook_steps=1", "data.val_split=null", "trainer.checkpoint_every_steps=2",
        "model.pose_codebook.quant_factor=2", "model.predictor.audio_steps=16", "trainer.num_workers=0",
        "trainer.device=cpu", "trainer.image_every_steps=0"]))
    # the pose step in-process (the rest of the pipeline is the photo tests' business; rendering costs seconds)
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[f"saas_pose={pose_run}"])
    pipeline = Pipeline(cfg, torch.device("cpu"))
    corpus = Corpus(synthetic_corpus)
    source = corpus.load_coeffs(corpus.clips("test")[0])[0]
    wav = load_audio(str(demo_inputs["audio"]))
    pipeline.read_inputs(Job(audio=str(demo_inputs["audio"]), out=str(tmp_path / "o.mp4"), image=str(demo_inputs["image"]),
                             text="A calm voice.", art=str(demo_inputs["art"]), pose="audio"))  # not a file: accepted
    coeffs = np.tile(source, (n_video_frames(wav.size), 1))
    angles = {seed: pipeline.pose(Job(audio=str(demo_inputs["audio"]), out=str(tmp_path / "o.mp4"), pose="audio",
                                      seed=seed), source, coeffs, wav)[:, :3] for seed in (0, 1)}
    angles = {"audio": angles[0], "seed": angles[1]}
    np.testing.assert_array_equal(angles["audio"][0], source[COEFF_SLICES["angle"]])  # it starts at the photo's pose
    assert np.ptp(angles["audio"], 0).max() > 0 and not np.allclose(angles["audio"], angles["seed"])


def style_ref_runs(demo_inputs, synthetic_corpus):
    """Tiny style_ref_motion, style_ref_mapping and style_ref_generator runs under the demo checkpoints."""
    from test_style_reference_generator_stage import TINY_GENERATOR, TINY_MAPPING

    from stylization.engine.run import run_training

    ckpt = demo_inputs["checkpoints"]
    trainer = ["max_minutes=null", "num_workers=0", "image_every_steps=0", "device=cpu"]
    common = [f"data.root={synthetic_corpus}", "data.val_split=null"] + [f"trainer.{t}" for t in trainer]
    if not (ckpt / "style_ref_generator").exists():
        run_training(compose_train(["stage=style_ref_motion", "model=style_ref_motion_small", "stage.window_frames=8",
                                    "stage.batch_size=2", "model.encoder_channels=4", "model.feature_dim=8",
                                    "model.hidden=8", f"trainer.run_dir={ckpt / 'style_ref_motion'}",
                                    "trainer.max_steps=2", "trainer.checkpoint_every_steps=2", *common]))
        run_training(compose_train(["stage=style_ref_mapping", "model=style_ref_mapping_small", *TINY_MAPPING,
                                    "stage.batch_size=1", "stage.pairs=1", f"trainer.run_dir={ckpt / 'style_ref_mapping'}",
                                    "trainer.max_steps=1", "trainer.checkpoint_every_steps=1", *common]))
        run_training(compose_train(["stage=style_ref_generator", "model=style_ref_generator_small", *TINY_GENERATOR,
                                    f"stage.mapping={ckpt / 'style_ref_mapping'}", "stage.batch_size=1", "stage.targets=1",
                                    f"trainer.run_dir={ckpt / 'style_ref_generator'}", "trainer.max_steps=1",
                                    "trainer.checkpoint_every_steps=1", *common]))
    return ckpt


def test_style_frames_transfer_a_talking_style(demo_inputs, synthetic_corpus, tmp_path):
    """style_frames= (the reference-frame style transfer method): a folder of a character's frames ->
    the motion generator fine-tuned to them at inference, the style-aware generator draws the photo; the
    video has the speech's length and sound. scripts/style_transfer.py writes a transferred run that
    infer.py then uses without transferring again. Misuse fails in one line."""
    from stylization.data.video import write_video

    ckpt = style_ref_runs(demo_inputs, synthetic_corpus)
    corpus = Corpus(synthetic_corpus)
    clip = corpus.clips("test")[0]
    frames = read_video(corpus.path(clip, "video"))[:12]
    folder = tmp_path / "style"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(cv2.resize(f, (256, 256)), cv2.COLOR_RGB2BGR))
    out = tmp_path / "styled.mp4"
    res = infer(*tuple_args(demo_inputs, out, text=None, art=None, style_frames=folder), "transfer.steps=2")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "style transfer" in res.stdout and "style-aware generator" in res.stdout
    info = probe_video(out)
    assert info.n_frames == n_video_frames(int(1.3 * SAMPLE_RATE)) and info.audio_duration is not None
    assert np.load(str(out.with_suffix(".npy"))).shape == (info.n_frames, 260)

    video = tmp_path / "character.mp4"  # a style video with sound: its sound is the transfer's audio stream
    write_video(video, np.stack([cv2.resize(f, (256, 256)) for f in frames]), 25,
                corpus.load_audio(clip)[: 12 * SAMPLE_RATE // 25])
    transferred = tmp_path / "transferred"
    res = subprocess.run([sys.executable, "scripts/style_transfer.py", f"run={ckpt / 'style_ref_motion'}",
                          f"references={video}", f"out={transferred}", "transfer.steps=2", "device=cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["reference_frames"] == 12 and len(report["style_reference_images"]) == 4
    assert report["projection_bank"] == 12  # the video's sound, one feature per frame
    out2 = tmp_path / "styled2.mp4"  # the transferred run, and with an art picture: Style-A draws the frames
    res = infer(*tuple_args(demo_inputs, out2, text=None, style_frames=video),
                f"style_ref_motion={transferred}", "style_strength=0.5")
    assert res.returncode == 0, res.stderr[-3000:]
    assert probe_video(out2).n_frames == info.n_frames
    assert "Style-A" in res.stdout and "style transfer" in res.stdout and "style-aware generator" not in res.stdout

    # misuse, in-process (the subprocess runs above show how errors reach the command line)
    from hydra import compose, initialize_config_dir

    from stylization.errors import ConfigError, DataError
    from stylization.pipeline import Job, Pipeline

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[f"checkpoints={ckpt}"])
    pipeline = Pipeline(cfg, torch.device("cpu"))
    empty = tmp_path / "empty"
    empty.mkdir()
    job = dict(audio=str(demo_inputs["audio"]), out=str(tmp_path / "bad.mp4"), image=str(demo_inputs["image"]))
    with pytest.raises(DataError, match="no pictures"):
        pipeline.run(Job(**job, style_frames=str(empty)))
    with pytest.raises(ConfigError, match="drop text="):
        pipeline.run(Job(**job, style_frames=str(folder), text="happy"))
    assert not (tmp_path / "bad.mp4").exists()


def test_the_style_reference_protocol(demo_inputs, synthetic_corpus, tmp_path):
    """generate_benchmark.py style_reference=speaker: the speaker's first test clip is the style video,
    the next clips (rows_per_speaker) are rows; the ground truth is the real video; benchmark.py then
    reports the style metrics on them."""
    ckpt = style_ref_runs(demo_inputs, synthetic_corpus)
    out = tmp_path / "bench"
    res = subprocess.run([sys.executable, "scripts/generate_benchmark.py", f"data.root={synthetic_corpus}", f"out={out}",
                          f"checkpoints={ckpt}", "style_reference=speaker", "rows_per_speaker=1", "method=style_ref",
                          "methods=[style_ref]", "transfer.steps=2", "device=cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    corpus = Corpus(synthetic_corpus)
    clips = corpus.clips("test")
    row = clips[1]  # the speaker's second clip (the first is the style video)
    assert sorted(p.name for p in (out / "style_ref").iterdir()) == [f"{row.id}.mp4"]
    gt, truth = read_video(out / "gt" / f"{row.id}.mp4"), read_video(corpus.path(row, "video"))
    assert len(gt) == len(truth) and np.abs(gt.astype(int) - truth.astype(int)).mean() < 4  # the real video
    score = subprocess.run([sys.executable, "scripts/benchmark.py", f"gen={out / 'style_ref'}", f"gt={out / 'gt'}",
                            f"out={tmp_path / 'r.json'}", "metrics=[cpbd,d_l,sld,slv,smd]", "size=64"],
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert score.returncode == 0, score.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["clips"] == 1 and set(result["aggregate"]) >= {"cpbd", "d_l", "sld", "slv", "smd"}


def test_a_job_sets_its_art_degree_and_reports_its_steps(demo_inputs, tmp_path):
    """Job.art_degree (the web page's slider) changes this job's look only; Job.on_step hears each
    step as it starts, under the names of the timings; an art_degree outside [0, 1] stops the job
    before anything is written."""
    from hydra import compose, initialize_config_dir

    from stylization.errors import ConfigError
    from stylization.pipeline import Job, Pipeline

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose(config_name="infer", overrides=[f"checkpoints={demo_inputs['checkpoints']}", "sheet=false",
                                                      "save_coeffs=false"])
    pipeline = Pipeline(cfg, torch.device("cpu"))
    job = dict(audio=str(demo_inputs["audio"]), image=str(demo_inputs["image"]), art=str(demo_inputs["art"]),
               text="happy")
    steps = []
    first = Job(**job, out=str(tmp_path / "default.mp4"), on_step=steps.append)
    pipeline.run(first)
    assert steps == [k for k in first.timings if not k.startswith("of which")]
    assert steps[0] == "inputs" and steps[-1] == "Style-A + outputs"
    default_degree = pipeline.renderer.degree
    pipeline.run(Job(**job, out=str(tmp_path / "photo.mp4"), art_degree=0.0))
    default, photo = (read_video(tmp_path / f"{n}.mp4").astype(int) for n in ("default", "photo"))
    assert np.abs(default - photo).mean() > 1.0  # the degree moved the picture
    assert pipeline.default_degree == default_degree != 0.0  # ... for that job only
    with pytest.raises(ConfigError, match=r"art_degree must be in \[0, 1\]"):
        pipeline.run(Job(**job, out=str(tmp_path / "bad.mp4"), art_degree=1.5))
    assert not (tmp_path / "bad.mp4").exists()

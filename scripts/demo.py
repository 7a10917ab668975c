"""``make demo``: the whole system on data it makes itself, on the CPU, in about 20 minutes.

1. a small synthetic corpus (4 speakers, 128 px, three art styles);
2. small Style-E, Style-A and StyleTalk models trained on it with the CPU recipes
   (``experiment=style_e_cpu``, ``experiment=style_a_cpu``, ``experiment=styletalk_cpu``: the same
   classes and code paths as the paper-size configurations, only narrower), into
   ``outputs/demo/checkpoints/`` laid out like ``checkpoints/`` (``style_e/``, ``style_a/``, ``styletalk/``);
3. ``infer.py`` on a held-out identity (a test speaker's frame), two sentences none of the clips
   speaks (espeak-ng, with pauses), an emotion text and an art reference picture -> ``outputs/demo/demo.mp4``
   and ``outputs/demo/sheet.png``. The exact command is printed so it can be rerun and varied;
   Then the emotion shown instead of told: the same photo, speech and art with a style clip (a
   test speaker's angry video, through the face and coefficient steps) -> ``outputs/demo/demo_clip.mp4``;
   Then the talking style shown by reference frames (the reference-frame style transfer method): a
   ``style_ref_motion``, ``style_ref_mapping`` and ``style_ref_generator`` run (``*_cpu`` recipes, short
   budgets) and ``infer.py ... style_frames=`` a test speaker's other clip (its frames and sound: the
   motion generator is fine-tuned to that speaker's motion, then the style-aware generator draws the
   photo) -> ``outputs/demo/demo_style_frames.mp4``;
4. the ``sync`` figure (of ``demo.mp4``): how the output's mouth (dlib's 68 landmarks on the output frames) opens
   with the speech's loudness (:mod:`stylization.metrics.speech_sync`), printed and written to
   ``outputs/demo/sync.json``.

``python scripts/demo.py [--minutes-style-e 3] [--minutes-style-a 7.5] [--minutes-styletalk 1.5]
[--minutes-style-ref 1] [--out outputs/demo]``
"""

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Two sentences with a pause, framed by 0.4 s of silence, as a recorded utterance (and every corpus
# clip) is: the sync figure correlates the mouth with the loudness, and one sentence without pauses
# bounds it near 0.5 even for the corpus's own motion model (docs/results.md, The demo).
SENTENCES = ("Every painted face can speak.", "It has a voice of its own today.")
PAUSE_SECONDS = 0.4
EMOTION = "A person speaks with a broad smile and raised cheeks and looks really happy."
STYLE = "pop_art"
STYLE_CLIP_EMOTION = "angry"


def run(args: list[str]) -> None:
    print("$ " + " ".join(shlex.quote(a) for a in args), flush=True)
    subprocess.run(args, cwd=REPO, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/demo")
    parser.add_argument("--minutes-style-e", type=float, default=3.0)
    parser.add_argument("--minutes-style-a", type=float, default=7.5)
    parser.add_argument("--minutes-styletalk", type=float, default=1.5)
    parser.add_argument("--minutes-style-ref", type=float, default=1.0, help="per stage of the reference-frame method")
    args = parser.parse_args()
    out = Path(args.out)
    py = sys.executable
    start = time.time()
    if out.exists():
        shutil.rmtree(out)  # a fresh demo every time (training runs would otherwise resume)
    corpus, ckpt, inputs = out / "corpus", out / "checkpoints", out / "inputs"
    run([py, "scripts/make_corpus.py", f"out={corpus}", "speakers=4", "clips=1", "resolution=128",
         "styles=[cel,pop_art,pixel_art]", "art_references=2", "workers=2"])
    # The recipes (configs/experiment/) hold every training value; the demo adds only what is its
    # own: where runs go, shorter budgets, and no validation or image grids (nobody reads them here).
    demo_only = ["data.val_split=null", "trainer.image_every_steps=0"]
    run([py, "train.py", "experiment=style_e_cpu", f"data.root={corpus}", f"trainer.run_dir={ckpt / 'style_e'}",
         f"trainer.max_minutes={args.minutes_style_e}", *demo_only])
    # (The recipe's EMA warms up, trainer.ema_rampup, so even a short run's EMA weights are current.)
    run([py, "train.py", "experiment=style_a_cpu", f"data.root={corpus}", f"trainer.run_dir={ckpt / 'style_a'}",
         f"trainer.max_minutes={args.minutes_style_a}", *demo_only])
    run([py, "train.py", "experiment=styletalk_cpu", f"data.root={corpus}", f"trainer.run_dir={ckpt / 'styletalk'}",
         f"trainer.max_minutes={args.minutes_styletalk}", *demo_only])
    for stage, extra in (("style_ref_motion", []), ("style_ref_mapping", []),
                         ("style_ref_generator", [f"stage.mapping={ckpt / 'style_ref_mapping'}"])):
        run([py, "train.py", f"experiment={stage}_cpu", f"data.root={corpus}", f"trainer.run_dir={ckpt / stage}",
             f"trainer.max_minutes={args.minutes_style_ref}", *extra, *demo_only])

    # inputs the models never saw: a test speaker's face, a new sentence, a reference picture
    import cv2
    import soundfile

    from stylization.constants import FACE_CROP_SIZE, SAMPLE_RATE
    from stylization.data.corpus import Corpus
    from stylization.data.synthetic.speech import synthesize
    from stylization.data.video import read_video

    inputs.mkdir(parents=True, exist_ok=True)
    test_clip = Corpus(corpus).clips("test")[0]
    face = read_video(Corpus(corpus).path(test_clip, "video"))[0]
    identity = cv2.resize(face, (FACE_CROP_SIZE, FACE_CROP_SIZE), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(inputs / "identity.png"), cv2.cvtColor(identity, cv2.COLOR_RGB2BGR))
    import numpy as np

    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), np.float32)
    speech = np.concatenate([pause, synthesize(SENTENCES[0], "en-us", 50, 150), pause,
                             synthesize(SENTENCES[1], "en-us", 50, 150), pause])
    soundfile.write(inputs / "speech.wav", speech, SAMPLE_RATE)
    art = json.loads((corpus / "art" / "index.json").read_text())[STYLE][0]
    shutil.copy(corpus / art, inputs / "art.png")

    command = [py, "infer.py", f"checkpoints={ckpt}", f"image={inputs / 'identity.png'}",
               f"audio={inputs / 'speech.wav'}", f"text={EMOTION}", f"art={inputs / 'art.png'}",
               f"out={out / 'demo.mp4'}", f"sheet_out={out / 'sheet.png'}", "pose_motion=gentle"]
    shown = ["python"] + [shlex.quote(a) for a in command[1:]]
    print("\ninference command (rerun or vary it):\n" + " ".join(shown) + "\n", flush=True)
    run(command)
    clips = Corpus(corpus).clips("test", speakers=[test_clip.speaker])
    style_clip = Corpus(corpus).path([c for c in clips if c.emotion == STYLE_CLIP_EMOTION][0], "video")
    by_clip = [a for a in command if not a.startswith(("text=", "out=", "sheet_out="))]
    run(by_clip + [f"style_clip={style_clip}", f"out={out / 'demo_clip.mp4'}"])
    style_frames = Corpus(corpus).path([c for c in clips if c.emotion == "neutral"][0], "video")
    run([a for a in by_clip if not a.startswith(("art=", "pose_motion="))] + [f"style_frames={style_frames}", "transfer.steps=100",
                                                             f"out={out / 'demo_style_frames.mp4'}"])
    report_sync(out / "demo.mp4", inputs / "speech.wav", out / "sync.json")
    print(f"\ndemo finished in {(time.time() - start) / 60:.1f} min: {out / 'demo.mp4'}, {out / 'sheet.png'} and "
          f"{out / 'demo_clip.mp4'}, {out / 'demo_style_frames.mp4'}")


def report_sync(video: Path, speech: Path, report: Path) -> float:
    """Prints (and writes to ``report``) the sync figure of the demo video: the correlation of the
    inner-lip gap that dlib's 68 landmarks measure on the output frames with the speech's loudness
    envelope (:mod:`stylization.metrics.speech_sync`)."""
    import cv2
    import numpy as np

    from stylization.constants import FACE_CROP_SIZE, FPS
    from stylization.data.audio import load_audio
    from stylization.data.video import read_video
    from stylization.metrics.speech_sync import inner_lip_gap, speech_sync
    from stylization.preprocess.faces import LandmarkDetector

    frames = read_video(video, fps=FPS)
    if frames.shape[1] < FACE_CROP_SIZE:  # dlib's HOG detector misses faces much under ~80 px
        frames = np.stack([cv2.resize(f, (FACE_CROP_SIZE, FACE_CROP_SIZE), interpolation=cv2.INTER_CUBIC)
                           for f in frames])
    landmarks, found = LandmarkDetector("dlib").track(frames)
    usable = ~np.isnan(landmarks).any(axis=(1, 2))
    sync = speech_sync(inner_lip_gap(np.nan_to_num(landmarks)), load_audio(speech), FPS, valid=usable)
    result = {"sync": round(sync, 4), "frames": len(frames), "detected": int(found.sum()), "landmarked": int(usable.sum())}
    report.write_text(json.dumps(result) + "\n")
    print(f"sync {sync:.2f}: correlation of the inner-lip gap (dlib 68 landmarks on the output frames) with the "
          f"speech's loudness envelope, over {result['landmarked']} of {len(frames)} frames "
          f"(face detected in {result['detected']}); {report}", flush=True)
    return sync


if __name__ == "__main__":
    main()

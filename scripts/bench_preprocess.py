"""Preprocessing speed by step: ``python scripts/bench_preprocess.py [raw=DIR dataset=mead] [clips=8] [coeffs_backend=fit]
[canvas=1080x1920 face=640]``, or of the Deep3DFaceRecon step alone: ``... deep3d_frames=64 [deep3d_batch=32]``.

Without ``raw=``, it makes a fake MEAD tree first (a synthetic corpus at 256 px, each clip put on a
352×288 canvas and re-encoded at 30 fps with m4a audio: the shape of the real thing, smaller).
Then it runs :class:`stylization.preprocess.runner.ClipProcessor` on ``clips`` clips in this one
process (one thread, as each worker runs) and prints frames per second for each step (decode +
detect + track, decode + crop + landmarks, coefficients, writing) and end to end; the last line
is one JSON object. Workers multiply the end-to-end figure by about the number of cores.

With ``deep3d_frames=N`` it times only the Deep3DFaceRecon coefficients of N frames
(:meth:`stylization.preprocess.deep3d.Deep3DBackend.coefficients`: the per-frame alignment, then
ReconNet in batches of ``deep3d_batch``) with a random-weight ``epoch_20.pth`` in the official
layout (the weights do not change the time), on the CPU (one thread, as each worker runs) and on
CUDA when there is one; the inputs are 256² crops with a face about 100 px across, as
:class:`~stylization.preprocess.runner.ClipProcessor` passes them. The alignment alone is timed too.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fake_mead(out: Path, clips: int, canvas: tuple[int, int] = (288, 352), face: int = 256) -> Path:
    """A MEAD-shaped tree of ``clips`` clips: corpus frames resized to ``face`` px on a ``canvas`` (H, W)."""
    import cv2
    import numpy as np

    from stylization.data.corpus import Corpus
    from stylization.data.synthetic.build import CorpusSpec, build_corpus
    from stylization.data.video import _encode_audio, read_video, resample_indices, write_video

    import av

    corpus_root = out / "corpus"
    build_corpus(CorpusSpec(out=str(corpus_root), speakers=1, clips=1, seconds=3.0, resolution=256, workers=2,
                            emotions=("neutral", "happy", "sad", "angry"), levels=(1, 2, 3)[: max(1, (clips + 3) // 4)],
                            styles=("cel",), art_references=1))
    corpus = Corpus(corpus_root)
    raw = out / "raw"
    for k, rec in enumerate(corpus.records[:clips]):
        frames = read_video(corpus.path(rec, "video"))
        if face != frames.shape[1]:
            frames = np.stack([cv2.resize(f, (face, face), interpolation=cv2.INTER_CUBIC) for f in frames])
        idx = resample_indices(np.arange(len(frames)) / 25, 25, 30)
        picture = np.full((len(idx), *canvas, 3), 90, np.uint8)
        y, x = (canvas[0] - face) // 2, (canvas[1] - face) // 2
        picture[:, y:y + face, x:x + face] = frames[idx]
        stem = f"{k + 1:03d}"
        write_video(raw / "M003/video/front" / rec.emotion / f"level_{rec.level}" / f"{stem}.mp4", picture, fps=30)
        audio_path = raw / "M003/audio" / rec.emotion / f"level_{rec.level}" / f"{stem}.m4a"
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(audio_path), mode="w", format="ipod") as container:
            stream = container.add_stream("aac", rate=48000)
            stream.layout = "mono"
            wav = corpus.load_audio(rec)
            _encode_audio(container, stream, wav, 16000, len(wav) / 16000)
    return raw


def bench_deep3d(work: Path, n_frames: int, batch_size: int) -> dict:
    """Frames per second of the Deep3DFaceRecon step: ``align`` (the alignment alone, CPU) and one
    entry per device (alignment + ReconNet, after one warm-up batch)."""
    import numpy as np
    import torch
    from scipy.io import savemat

    from stylization.preprocess.deep3d import Deep3DBackend, align
    from stylization.preprocess.recon_net import ReconNet

    rng = np.random.default_rng(0)
    lm3d = rng.normal(size=(68, 3))  # stand-in standard landmarks: only the crop's scale (about 1) matters here
    (work / "BFM").mkdir(parents=True)
    savemat(work / "BFM" / "similarity_Lm3D_all.mat", {"lm": lm3d})
    torch.save({"net_recon": ReconNet().state_dict(), "epoch": 20}, work / "epoch_20.pth")
    frames = (rng.random((n_frames, 256, 256, 3)) * 255).astype(np.uint8)
    landmarks = (100 * lm3d[:, :2] * [1, -1] + 128 + rng.normal(scale=2.0, size=(n_frames, 68, 2))).astype(np.float32)
    fps = {}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        backend = Deep3DBackend(str(work / "epoch_20.pth"), str(work / "BFM"), device, batch_size)
        if device == "cpu":
            started = time.perf_counter()
            for frame, lm in zip(frames, landmarks):
                align(frame, lm, backend.lm3d5)
            fps["align"] = n_frames / (time.perf_counter() - started)
        backend.coefficients(frames[:batch_size], landmarks[:batch_size])  # warm-up: allocator, kernel choice
        started = time.perf_counter()
        rows = backend.coefficients(frames, landmarks)  # ends with a copy to the host: the device has finished
        fps[device] = n_frames / (time.perf_counter() - started)
        assert rows.shape == (n_frames, 260)
    return fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", default=None)
    parser.add_argument("--dataset", default="mead")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--coeffs-backend", default="fit")
    parser.add_argument("--canvas", default="288x352", help="HxW of the fake tree's frames (1080x1920: MEAD's)")
    parser.add_argument("--face", type=int, default=256, help="px of the face square on the canvas")
    parser.add_argument("--deep3d-frames", type=int, default=0, help="time only the Deep3DFaceRecon step, on N frames")
    parser.add_argument("--deep3d-batch", type=int, default=32, help="frames per ReconNet batch (deep3d_frames)")
    argv = []  # key=value, as the other scripts take them, or --key value
    for arg in sys.argv[1:]:
        key, eq, value = arg.partition("=")
        argv += [f"--{key.replace('_', '-')}", value] if eq and not arg.startswith("--") else [arg]
    args = parser.parse_args(argv)
    import cv2
    import torch

    from stylization.preprocess.runner import ClipProcessor, ProcessOptions, write_processed
    from stylization.preprocess.sources import discover

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_preprocess_"))
    if args.deep3d_frames > 0:
        fps = bench_deep3d(work, args.deep3d_frames, args.deep3d_batch)
        for name, value in fps.items():
            label = "align (CPU)" if name == "align" else f"deep3d ({name})"
            print(f"{label:>16}: {value:8.1f} frames/s")
        print(json.dumps({"frames": args.deep3d_frames, "batch": args.deep3d_batch, "threads": torch.get_num_threads(),
                          "fps": {k: round(v, 1) for k, v in fps.items()}}))
        return
    canvas = tuple(int(v) for v in args.canvas.split("x"))
    raw = Path(args.raw) if args.raw else fake_mead(work, args.clips, canvas, args.face)
    clips = discover(args.dataset, str(raw))[0][: args.clips]
    processor = ClipProcessor(ProcessOptions(coeffs_backend=args.coeffs_backend))
    frames, write_seconds, started = 0, 0.0, time.perf_counter()
    for i, clip in enumerate(clips):
        result = processor(clip)
        t = time.perf_counter()
        write_processed(str(work / "out"), clip, result, f"bench-{i}")
        write_seconds += time.perf_counter() - t
        frames += len(result["frames"])
    total = time.perf_counter() - started
    steps = {**dict(processor.seconds), "write": write_seconds}
    for name, seconds in steps.items():
        print(f"{name:>16}: {frames / seconds:8.1f} frames/s ({seconds:.2f} s)")
    print(f"{'end to end':>16}: {frames / total:8.1f} frames/s, one process ({len(clips)} clips, {frames} frames)")
    print(json.dumps({"clips": len(clips), "frames": frames, "seconds": round(total, 2),
                      "fps_end_to_end": round(frames / total, 1),
                      "fps_by_step": {k: round(frames / v, 1) for k, v in steps.items()}}))


if __name__ == "__main__":
    main()

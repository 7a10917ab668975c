"""Check a corpus root in the processed-clip format before training on it.

    python scripts/inspect_corpus.py DIR [--window-frames 32]

Prints clip counts per split, speaker and emotion, frames per split, clips shorter than the
window, and every damaged clip with its problem. The last line is one JSON object
({"clips", "speakers", "damaged", "short", "speaker_disjoint"}); the exit code is 1 when any
clip is damaged or the index cannot be read.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stylization.cli import run_cli  # noqa: E402
from stylization.constants import FPS  # noqa: E402
from stylization.data.corpus import Corpus, check_speaker_disjoint  # noqa: E402
from stylization.errors import DataError  # noqa: E402


def inspect(root: str, window_frames: int) -> int:
    corpus = Corpus(root)
    by_split = collections.Counter(r.split for r in corpus.records)
    frames = collections.Counter()
    for r in corpus.records:
        frames[r.split] += r.n_frames
    emotions = collections.Counter(r.emotion for r in corpus.records)
    for split in sorted(by_split):
        print(f"{split:>5}: {by_split[split]} clips, {len(corpus.speakers(split))} speakers, "
              f"{frames[split] / FPS / 60:.1f} min at {FPS} fps")
    print("emotions: " + ", ".join(f"{e} {n}" for e, n in sorted(emotions.items())))
    short = [r.id for r in corpus.records if r.n_frames < window_frames]
    if short:
        print(f"{len(short)} clips shorter than {window_frames} frames: {', '.join(short[:20])}")
    damaged = {r.id: p for r in corpus.records if (p := corpus.check_clip(r)) is not None}
    for cid, problem in damaged.items():
        print(f"damaged {cid}: {problem}")
    try:
        check_speaker_disjoint(corpus.records)
        disjoint = True
    except DataError as exc:
        print(f"note: {exc}")
        disjoint = False
    print(json.dumps({"clips": len(corpus.records), "speakers": len(corpus.speakers()), "damaged": len(damaged),
                      "short": len(short), "speaker_disjoint": disjoint}))
    return 1 if damaged else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="corpus root holding index.jsonl")
    parser.add_argument("--window-frames", type=int, default=32, help="training window length in frames")
    args = parser.parse_args()
    codes = []
    run_cli(lambda: codes.append(inspect(args.root, args.window_frames)))
    sys.exit(codes[0] if codes else 1)


if __name__ == "__main__":
    main()

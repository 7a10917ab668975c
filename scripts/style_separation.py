"""Can the corpus's speakers be told apart by their motion? ``python scripts/style_separation.py CORPUS``.

The reference-frame style transfer method learns a character's motion style; on a corpus whose
speakers all move alike there is nothing to learn. For every speaker, ``--pairs`` times, a clip's
landmarks are compared by SLD, SLV and SMD (:mod:`stylization.metrics.style_motion`) with another clip
of the same speaker and with a clip of another speaker
(:func:`~stylization.metrics.style_motion.speaker_separation`). The last line printed is one JSON
object: per metric the within- and between-speaker means and the share of draws where the other
speaker scores worse (1: always told apart, 0.5: chance), then ``speakers`` and ``clips``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from stylization.cli import run_cli

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="a processed-clip corpus (index.jsonl)")
    parser.add_argument("--pairs", type=int, default=6, help="draws per speaker")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    def task():
        from stylization.data.corpus import Corpus
        from stylization.metrics.style_motion import speaker_separation

        corpus = Corpus(args.corpus)
        clips: dict[str, list] = {}
        for rec in corpus.records:
            clips.setdefault(rec.speaker, []).append(corpus.load_landmarks(rec))
        result = speaker_separation(clips, args.pairs, args.seed)
        result.update(speakers=len(clips), clips=sum(len(v) for v in clips.values()))
        print(json.dumps(result))

    run_cli(task)


if __name__ == "__main__":
    main()

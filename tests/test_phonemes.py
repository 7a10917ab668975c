"""Phonemes per frame (StyleTalk's content input): the official vocabulary and files, frame labels
from segments, espeak-ng's pronunciations against the CMU dictionary, pocketsphinx's alignment and
recognition on synthetic speech, and the synthetic corpus's stored phonemes."""

import json

import numpy as np
import pytest

from stylization.data.phonemes import (NSN, PHONEMES, SIL, PhonemeRecognizer, frame_labels, ipa_to_arpabet, phone_index,
                                       read_official_json, resample_labels, write_official_json)
from stylization.errors import DataError

# FuxiVirtualHuman/styletalk's phindex.json, as released.
OFFICIAL_PHINDEX = {"AA": 0, "AE": 1, "AH": 2, "AO": 3, "AW": 4, "AY": 5, "B": 6, "CH": 7, "D": 8, "DH": 9, "EH": 10,
                    "ER": 11, "EY": 12, "F": 13, "G": 14, "HH": 15, "IH": 16, "IY": 17, "JH": 18, "K": 19, "L": 20,
                    "M": 21, "N": 22, "NG": 23, "NSN": 24, "OW": 25, "OY": 26, "P": 27, "R": 28, "S": 29, "SH": 30,
                    "SIL": 31, "T": 32, "TH": 33, "UH": 34, "UW": 35, "V": 36, "W": 37, "Y": 38, "Z": 39, "ZH": 40}


def test_the_vocabulary_is_the_official_one():
    assert {name: i for i, name in enumerate(PHONEMES)} == OFFICIAL_PHINDEX
    assert phone_index("sil") == phone_index("<sil>") == SIL == 31
    assert phone_index("+NSN+") == phone_index("+SPN+") == phone_index("[NOISE]") == NSN == 24
    with pytest.raises(ValueError, match="unknown phone"):
        phone_index("QQ")


def test_frame_labels_take_the_phone_covering_most_of_each_frame():
    # steps 0-5 AA, 6-9 B, 10-13 nothing, 14-15 CH, 16-19 nothing: four steps per frame
    labels = frame_labels([("AA", 0, 5), ("B", 6, 9), ("CH", 14, 15)], 5)
    assert labels.tolist() == [0, 0, 6, 7, SIL]  # frame 1: AA 2 steps, B 2 steps: the tie goes to AA (first)
    assert frame_labels([("SIL", 0, 3), (2, 4, 100)], 3).tolist() == [SIL, 2, 2]  # indices work, past the end ignored


def test_frame_rates_and_the_official_json(tmp_path):
    labels = np.random.default_rng(0).integers(0, len(PHONEMES), 100)
    at30 = resample_labels(labels, 25, 30)
    assert len(at30) == 120 and (resample_labels(at30, 30, 25, 100) == labels).all()
    write_official_json(tmp_path / "seq.json", at30)
    assert json.loads((tmp_path / "seq.json").read_text()) == at30.tolist()  # a plain list of ints, as released
    assert (read_official_json(tmp_path / "seq.json") == at30).all()
    for content, message in (("[1, 2, 41]", "indices 0..40"), ('{"a": 1}', "indices 0..40"), ("[1, 2", "not a readable")):
        (tmp_path / "bad.json").write_text(content)
        with pytest.raises(DataError, match=message):
            read_official_json(tmp_path / "bad.json")
    with pytest.raises(DataError, match="not found"):
        read_official_json(tmp_path / "missing.json")


def test_espeak_pronunciations_mostly_match_the_cmu_dictionary():
    """g2p for words the dictionary lacks: on words it has, espeak-ng's IPA mapped to ARPAbet equals
    one of the dictionary's pronunciations for most words (the independent reference)."""
    import os

    import pocketsphinx

    from stylization.data.phonemes import g2p

    words = ["garden", "window", "tomato", "station", "market", "river", "bread", "shelves", "yesterday", "umbrella",
             "coffee", "kitchen", "battery", "holiday", "morning", "storm", "teacher", "doctor", "brother", "ticket"]
    cmu: dict[str, list[list[str]]] = {}
    with open(os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")) as f:
        for line in f:
            word, *phones = line.split()
            cmu.setdefault(word.split("(")[0], []).append(phones)
    same = [g2p(w) in cmu[w] for w in words]
    assert np.mean(same) >= 0.8, [(w, g2p(w), cmu[w]) for w, ok in zip(words, same) if not ok]  # measured: 20/20
    assert ipa_to_arpabet("nˈeɪbɚ") == ["N", "EY", "B", "ER"] and ipa_to_arpabet("tʃˈɜːtʃ") == ["CH", "ER", "CH"]


def test_alignment_and_recognition_on_synthetic_speech():
    """A sentence between two 0.4 s silences: the alignment labels the silences SIL and the words with
    their dictionary phones in order; the recogniser, without the transcript, agrees on most frames."""
    from stylization.data.synthetic.speech import synthesize

    text = "Could you pass me the coffee cup, please?"
    pause = np.zeros(6400, np.float32)
    wav = np.concatenate([pause, synthesize(text, "en-us+f3", 50, 160), pause])
    n = len(wav) // 640
    recognizer = PhonemeRecognizer()
    aligned = recognizer.align(wav, text, n)
    assert aligned.shape == (n,) and (aligned[:8] == SIL).all() and (aligned[-8:] == SIL).all()
    spoken = [PHONEMES[i] for i in aligned if i != SIL]
    runs = [p for k, p in enumerate(spoken) if k == 0 or p != spoken[k - 1]]
    assert runs[:4] == ["K", "UH", "D", "Y"], runs  # could you ...
    recognized = recognizer.recognize(wav, n)
    assert recognized.shape == (n,) and (recognized == aligned).mean() > 0.5


def test_the_synthetic_corpus_stores_aligned_phonemes(tmp_path):
    """phonemes.npy per clip, and scripts/eval_phonemes.py scores the recogniser against them."""
    from stylization.data.corpus import Corpus
    from stylization.data.synthetic.build import CorpusSpec, build_corpus

    synthetic_corpus = tmp_path / "corpus"
    build_corpus(CorpusSpec(out=str(synthetic_corpus), speakers=2, clips=1, seconds=2.0, resolution=64, workers=2,
                            emotions=("neutral", "happy", "sad"), levels=(1,), styles=("cel",), art_references=1))
    corpus = Corpus(synthetic_corpus)
    aligned = [r for r in corpus.records if "phonemes" in r.files]
    # every clip here aligns; about 1 in 15 does not in general (269 of 288 on a seed-2727 corpus)
    assert len(aligned) == len(corpus.records) == 6
    rec = aligned[0]
    labels = corpus.load_phonemes(rec)
    assert labels.shape == (rec.n_frames,) and labels.dtype == np.int64
    assert labels[0] == SIL and (labels != SIL).sum() > rec.n_frames // 3  # a lead-in silence, then speech
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "scripts/eval_phonemes.py", f"data.root={synthetic_corpus}", "split=test",
                           "max_clips=2"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["clips"] == 2 and 0 < result["speech_frame_accuracy"] <= 1 and result["silence_recall"] > 0.5


def test_recognition_does_not_depend_on_the_clips_before():
    from stylization.data.synthetic.speech import synthesize

    first = synthesize("The old farmer carried the heavy box across the yard.", "en-us+m3", 40, 160)
    second = synthesize("Could you pass me the coffee cup, please?", "en-gb+f2", 60, 170)
    shared = PhonemeRecognizer()
    shared.recognize(first, len(first) // 640)
    assert (shared.recognize(second, len(second) // 640) ==
            PhonemeRecognizer().recognize(second, len(second) // 640)).all()

"""Clip-level action units: OpenFace CSVs, and the landmark estimates on the synthetic corpus, whose
emotions are written as known facial actions (stylization/data/synthetic/profiles.py)."""

import numpy as np
import pytest
import torch

from stylization.constants import COEFF_SLICES, EXP_DIM
from stylization.data.corpus import Corpus
from stylization.data.face_model import EXPRESSION_COMPONENTS, stand_in_face_model
from stylization.data.synthetic.motion import FRAMING
from stylization.data.synthetic.profiles import au_intensities
from stylization.errors import DataError
from stylization.preprocess.aus import (
    AU_NAMES,
    DEFAULT_NEUTRAL,
    geometric_aus,
    landmark_features,
    read_openface_csv,
    reference_features,
)
from stylization.text.emotion_text import (
    ACTIVE_THRESHOLD,
    ADVERBS,
    AU_PHRASES,
    EMOTION_WORDS,
    SPEECH_AUS,
    describe_aus,
    infer_emotion,
)

# ---------------------------------------------------------------------------------------
# OpenFace CSV

HEADER = ["frame", "face_id", "timestamp", "confidence", "success", "gaze_0_x", "AU01_r", "AU12_r", "AU45_r",
          "AU01_c", "AU12_c", "AU28_c"]
ROWS = [  # frame, face, time, confidence, success, gaze, AU01_r, AU12_r, AU45_r, then presences
    [1, 0, 0.00, 0.98, 1, 0.1, 1.0, 3.0, 0.0, 1, 1, 0],
    [2, 0, 0.04, 0.97, 1, 0.1, 2.0, 4.0, 1.0, 1, 1, 0],
    [3, 0, 0.08, 0.20, 1, 0.1, 5.0, 0.0, 5.0, 1, 0, 1],  # low confidence: left out
    [4, 0, 0.12, 0.00, 0, 0.0, 0.0, 0.0, 0.0, 0, 0, 0],  # not tracked: left out
]


def write_csv(path, header, rows, sep=", "):
    lines = [sep.join(header)] + [sep.join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("sep", [", ", ","])  # OpenFace 2.0-2.2 write a space after each comma
def test_openface_csv_means_over_tracked_frames(tmp_path, sep):
    aus = read_openface_csv(write_csv(tmp_path / "clip.csv", HEADER, ROWS, sep))
    assert aus == pytest.approx({"AU01": 1.5, "AU12": 3.5, "AU45": 0.5})
    assert len(describe_aus(aus, "happy", "A man", 2, np.random.default_rng(0))) == 2  # what the texts step reads


def test_openface_csv_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_openface_csv(tmp_path / "missing.csv")
    no_aus = [h for h in HEADER if not h.endswith("_r")]
    rows = [[v for h, v in zip(HEADER, r) if not h.endswith("_r")] for r in ROWS]
    with pytest.raises(DataError, match="no AU intensity columns"):
        read_openface_csv(write_csv(tmp_path / "no_aus.csv", no_aus, rows))
    with pytest.raises(DataError, match="no frame with success == 1"):
        read_openface_csv(write_csv(tmp_path / "lost.csv", HEADER, ROWS[2:]))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        read_openface_csv(tmp_path / "empty.csv")
    bad = [r.copy() for r in ROWS]
    bad[0][6] = "n/a"
    with pytest.raises(DataError, match="'n/a' is not a number"):
        read_openface_csv(write_csv(tmp_path / "bad.csv", HEADER, bad))
    with pytest.raises(DataError, match="row 2 after the header has fewer fields"):
        read_openface_csv(write_csv(tmp_path / "short.csv", HEADER, [ROWS[0], ROWS[1][:5]]))


# ---------------------------------------------------------------------------------------
# Landmark geometry


def test_features_ignore_scale_roll_and_offset():
    fm = stand_in_face_model()
    coeffs = torch.zeros(3, 260)
    coeffs[:, 80 + EXPRESSION_COMPONENTS.index("lip_corner_pull")] = torch.tensor([0.0, 0.5, 1.0])
    coeffs[:, 254:257] = torch.tensor([0.0, -0.12, -3.0])
    lm = fm.landmarks_from_coeffs(coeffs).numpy()
    turn = np.deg2rad(20)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    moved = 3.0 * lm @ rot.T + np.array([40.0, -7.0])
    a, b = landmark_features(lm), landmark_features(moved)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-6, err_msg=name)  # float32 landmarks
    aus = [geometric_aus(lm[i:i + 1], neutral=reference_features(lm[:1]))["AU12"] for i in range(3)]
    assert aus[0] == 0 and 2.0 < aus[1] < 3.0 and aus[2] > 4.5  # the gain: component 1.0 reads 5


def test_pose_correction_undoes_foreshortening():
    coeffs = torch.zeros(3, 260)
    coeffs[:, 254:257] = torch.tensor([0.0, -0.12, -3.0])
    coeffs[1, 224], coeffs[2, 225] = 0.35, 0.45  # pitch, yaw (radians)
    lm = stand_in_face_model().landmarks_from_coeffs(coeffs).numpy()
    raw, fixed = landmark_features(lm), landmark_features(lm, coeffs.numpy())
    for name in ("eye_open", "chin_drop"):
        frontal = raw[name][0]
        assert (np.abs(fixed[name][1:] - frontal) < 0.5 * np.abs(raw[name][1:] - frontal)).all(), name


def test_default_neutral_is_the_stand_in_mean_face():
    coeffs = torch.zeros(1, 260)
    coeffs[:, 254:257] = torch.from_numpy(FRAMING)
    lm = stand_in_face_model().landmarks_from_coeffs(coeffs).numpy()
    measured = reference_features(lm)
    assert set(measured) == set(DEFAULT_NEUTRAL)
    for name, value in DEFAULT_NEUTRAL.items():
        assert abs(measured[name] - value) < 1e-4, name
    assert all(v < 0.05 for v in geometric_aus(lm).values())  # the defaults are rounded to 1e-4


def test_missing_frames_and_bad_input():
    coeffs = torch.zeros(4, 260)
    coeffs[:, 80 + EXPRESSION_COMPONENTS.index("lip_corner_pull")] = torch.tensor([0.0, 0.4, 0.8, 0.2])
    lm = stand_in_face_model().landmarks_from_coeffs(coeffs).numpy()
    lost = lm.copy()
    lost[1] = np.nan  # no face in frame 1: the clip reads as if the frame were not there
    assert geometric_aus(lost) == pytest.approx(geometric_aus(np.delete(lm, 1, axis=0)))
    assert set(geometric_aus(lost)) == set(AU_NAMES)
    with pytest.raises(DataError, match="none of the 2 frames"):
        geometric_aus(np.full((2, 68, 2), np.nan))
    with pytest.raises(ValueError, match="lacks features"):
        geometric_aus(lm, neutral={"eye_open": 0.1})
    with pytest.raises(ValueError, match="coeffs must be"):
        geometric_aus(lm, coeffs=np.zeros((3, 260)))


def estimate_corpus(root) -> dict:
    """{(speaker, emotion, level): (estimated AUs, true AUs)}, each speaker's neutral level-1 clip the reference."""
    corpus = Corpus(root)
    neutral = {r.speaker: reference_features(corpus.load_landmarks(r), corpus.load_coeffs(r))
               for r in corpus.records if r.emotion == "neutral" and r.level == 1}
    out = {}
    for rec in corpus.records:
        coeffs = corpus.load_coeffs(rec)
        estimate = geometric_aus(corpus.load_landmarks(rec), coeffs, neutral[rec.speaker])
        mean_exp = np.zeros(EXP_DIM)
        mean_exp[: len(EXPRESSION_COMPONENTS)] = coeffs[:, COEFF_SLICES["exp"]][:, : len(EXPRESSION_COMPONENTS)].mean(0)
        out[rec.speaker, rec.emotion, rec.level] = estimate, au_intensities(mean_exp)
    return out


@pytest.fixture(scope="module")
def corpus_aus(synthetic_corpus):
    return estimate_corpus(synthetic_corpus)


def mean_au(table, emotion, au, levels=(1, 2, 3)):
    return np.mean([est[au] for (s, e, lvl), (est, _) in table.items() if e == emotion and lvl in levels])


def test_estimates_separate_the_emotions(corpus_aus):
    # measured (mean over 3 speakers x 3 levels): AU12 happy 4.0, neutral 0.1, sad 0.0; AU06 happy 3.9;
    # AU15 sad 3.5; AU04 sad 1.2, angry 3.7, neutral 0.05; AU01 / AU02 / AU05 surprised 3.8 / 3.8 / 3.9,
    # neutral <= 0.05; AU20 fear 3.3, neutral 0.5 (speech stretches the lips too)
    t = corpus_aus
    assert mean_au(t, "happy", "AU12") > mean_au(t, "neutral", "AU12") + 3.0
    assert mean_au(t, "happy", "AU12") > mean_au(t, "sad", "AU12") + 3.0
    assert mean_au(t, "happy", "AU06") > mean_au(t, "neutral", "AU06") + 2.5
    assert mean_au(t, "sad", "AU15") > mean_au(t, "neutral", "AU15") + 2.5
    assert mean_au(t, "sad", "AU04") > mean_au(t, "neutral", "AU04") + 0.8
    assert mean_au(t, "angry", "AU04") > mean_au(t, "neutral", "AU04") + 2.5
    for au in ("AU01", "AU02", "AU05"):
        assert mean_au(t, "surprised", au) > mean_au(t, "neutral", au) + 2.5, au
    assert mean_au(t, "fear", "AU20") > mean_au(t, "neutral", "AU20") + 2.0


def test_neutral_clips_stay_below_the_text_threshold(corpus_aus):
    emotional = [a for a in AU_NAMES if a not in SPEECH_AUS]  # lips part and jaw drop follow the speech
    for (speaker, emotion, level), (est, _) in corpus_aus.items():
        if emotion == "neutral" and level > 1:  # level 1 is the reference itself
            assert max(est[a] for a in emotional) < ACTIVE_THRESHOLD, (speaker, level, est)


@pytest.mark.parametrize("emotion, au", [("happy", "AU12"), ("sad", "AU15"), ("angry", "AU04"),
                                         ("surprised", "AU01"), ("fear", "AU20")])
def test_stronger_levels_read_higher(corpus_aus, emotion, au):
    for speaker in {s for s, _, _ in corpus_aus}:  # measured: level 3 is 2.1-2.7 above level 1
        one, three = (corpus_aus[speaker, emotion, lvl][0][au] for lvl in (1, 3))
        assert three >= one + 1.5, (speaker, emotion, au, one, three)


@pytest.mark.parametrize("au, least", [("AU01", 0.85), ("AU02", 0.85), ("AU04", 0.85), ("AU05", 0.95),
                                       ("AU06", 0.95), ("AU12", 0.95), ("AU15", 0.93), ("AU20", 0.85),
                                       ("AU26", 0.75)])
def test_estimates_track_the_true_intensities(corpus_aus, au, least):
    # measured correlations over the 72 clips: 0.93 0.92 0.91 0.98 0.99 0.99 0.97 0.90 0.87
    est, true = (np.array([pair[i][au] for pair in corpus_aus.values()]) for i in (0, 1))
    assert np.corrcoef(est, true)[0, 1] > least


def test_a_happy_clip_is_described_as_a_smile(synthetic_corpus):
    corpus = Corpus(synthetic_corpus)
    clips = {(r.speaker, r.emotion, r.level): r for r in corpus.records}
    speaker = corpus.speakers()[0]
    neutral = reference_features(corpus.load_landmarks(clips[speaker, "neutral", 1]))
    aus = geometric_aus(corpus.load_landmarks(clips[speaker, "happy", 3]), neutral=neutral)
    assert infer_emotion(aus) == "happy"
    texts = describe_aus(aus, None, "A woman", 5, np.random.default_rng(0))
    happy_words = [w for words in EMOTION_WORDS["happy"].values() for w in words]
    smile = {p.format(adv=a) for au in ("AU06", "AU12") for p in AU_PHRASES[au] for level in ADVERBS for a in level}
    assert len(texts) == 5 and all(any(w in t for w in happy_words) for t in texts)
    assert any(any(clause in t for clause in smile) for t in texts)

"""Emotion texts from action units (the template stage of the annotation pipeline)."""

import numpy as np
import pytest

from stylization.text.emotion_text import describe_aus, infer_emotion


def test_sentences_are_distinct_deterministic_and_name_the_emotion():
    aus = {"AU06_r": 2.5, "AU12_r": 4.5, "AU26_r": 3.0}
    a = describe_aus(aus, "happy", "A woman", 5, np.random.default_rng(1))
    b = describe_aus(aus, "happy", "A woman", 5, np.random.default_rng(1))
    assert a == b and len(set(a)) == 5
    assert all(t.startswith(("A woman", "With", "The face", "Quite", "Clearly", "Rather", "Very", "Extremely",
                             "Deeply", "Mildly", "Somewhat", "A little")) for t in a)
    assert not any("jaw" in t for t in a)  # speech AUs are not emotion cues


def test_intensity_words_follow_the_values():
    strong = " ".join(describe_aus({"AU04": 4.8}, "angry", "A man", 6, np.random.default_rng(0)))
    weak = " ".join(describe_aus({"AU04": 1.2}, "angry", "A man", 6, np.random.default_rng(0)))
    assert any(w in strong for w in ("strongly", "markedly", "sharply"))
    assert any(w in weak for w in ("slightly", "a little", "faintly"))


def test_emotion_inferred_from_prototypes():
    assert infer_emotion({"AU06": 3, "AU12": 4}) == "happy"
    assert infer_emotion({"AU01": 3, "AU02": 3, "AU05": 3}) == "surprised"
    assert infer_emotion({"AU12": 0.2}) == "neutral"
    with pytest.raises(ValueError, match="unknown emotion"):
        describe_aus({}, "bored", "A man", 2, np.random.default_rng(0))

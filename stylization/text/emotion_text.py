"""Emotion texts from facial action units: the template stage of the annotation pipeline.

Style-E is conditioned on sentences such as "A woman speaks with a broad smile, cheeks
raised, clearly delighted." The paper builds them from OpenFace action-unit intensities:
active AUs with three intensity levels -> synonym-rich templates -> (CLIP ranking against
the frames, a later stage) -> five sentences per clip. This module is the template stage.

Input: AU intensities on OpenFace's 0-5 scale keyed by FACS name ("AU12"; OpenFace's
"AU12_r" is accepted), an optional emotion label, and a subject ("A woman"). Output:
distinct sentences. The synthetic corpus and the MEAD annotation both call
:func:`describe_aus`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

ACTIVE_THRESHOLD = 1.0  # OpenFace intensity below which an AU is treated as absent
SPEECH_AUS = ("AU25", "AU26", "AU45")  # lips part, jaw drop, blink: driven by speech, not emotion

# Participial clauses per AU (they read after "with" and after a comma); {adv} is an intensity adverb.
AU_PHRASES: dict[str, tuple[str, ...]] = {
    "AU01": ("inner brows {adv} raised", "the inner brows {adv} lifted"),
    "AU02": ("outer brows {adv} lifted", "eyebrows {adv} arched"),
    "AU04": ("brows {adv} drawn together", "brows {adv} lowered into a frown", "brows {adv} knitted"),
    "AU05": ("eyes {adv} widened", "upper lids {adv} raised", "eyes {adv} wide open"),
    "AU06": ("cheeks {adv} raised", "cheeks {adv} lifted"),
    "AU07": ("eyelids {adv} tightened", "eyes {adv} narrowed"),
    "AU09": ("nose {adv} wrinkled", "nose {adv} scrunched up"),
    "AU10": ("upper lip {adv} raised", "the upper lip {adv} curled up"),
    "AU12": ("lip corners {adv} pulled up", "lips {adv} curved into a smile", "mouth corners {adv} turned up"),
    "AU14": ("mouth corners {adv} tucked in", "cheeks {adv} dimpled", "mouth {adv} twisted into a smirk"),
    "AU15": ("lip corners {adv} pulled down", "mouth corners {adv} turned down"),
    "AU16": ("lower lip {adv} pushed down", "the lower lip {adv} dropped"),
    "AU17": ("chin {adv} raised", "the chin {adv} pushed up"),
    "AU20": ("lips {adv} stretched sideways", "mouth {adv} stretched wide"),
    "AU23": ("lips {adv} pressed tight", "lips {adv} tightened"),
    "AU25": ("lips {adv} parted",),
    "AU26": ("jaw {adv} dropped",),
    "AU45": ("eyes {adv} blinking",),
}
# Intensity words for three levels: low (1-2), medium (2-3.5), high (>= 3.5).
ADVERBS = (("slightly", "a little", "faintly"), ("clearly", "noticeably", "visibly"),
           ("strongly", "markedly", "sharply"))
DEGREE = (("a little", "mildly", "somewhat"), ("quite", "clearly", "rather"), ("very", "extremely", "deeply"))

EMOTION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "neutral": {"adj": ("calm", "neutral", "composed", "relaxed", "even-tempered"),
                "adv": ("calmly", "evenly", "plainly"), "noun": ("calm", "composure")},
    "happy": {"adj": ("happy", "delighted", "cheerful", "joyful", "glad"),
              "adv": ("happily", "cheerfully", "joyfully"), "noun": ("joy", "delight", "happiness")},
    "angry": {"adj": ("angry", "furious", "irritated", "annoyed", "enraged"),
              "adv": ("angrily", "furiously", "irritably"), "noun": ("anger", "rage", "irritation")},
    "sad": {"adj": ("sad", "sorrowful", "gloomy", "downcast", "unhappy"),
            "adv": ("sadly", "gloomily", "sorrowfully"), "noun": ("sadness", "sorrow", "gloom")},
    "surprised": {"adj": ("surprised", "astonished", "amazed", "startled", "stunned"),
                  "adv": ("in surprise", "with astonishment", "in amazement"),
                  "noun": ("surprise", "astonishment", "amazement")},
    "fear": {"adj": ("afraid", "frightened", "scared", "anxious", "fearful"),
             "adv": ("fearfully", "anxiously", "nervously"), "noun": ("fear", "anxiety", "dread")},
    "disgusted": {"adj": ("disgusted", "repulsed", "revolted", "sickened", "put off"),
                  "adv": ("with disgust", "in revulsion", "with distaste"),
                  "noun": ("disgust", "revulsion", "distaste")},
    "contempt": {"adj": ("contemptuous", "scornful", "disdainful", "dismissive", "sneering"),
                 "adv": ("scornfully", "disdainfully", "dismissively"),
                 "noun": ("contempt", "scorn", "disdain")},
}
# Prototype AU patterns (FACS emotion prototypes), used when no label is given.
EMOTION_PROTOTYPES: dict[str, tuple[str, ...]] = {
    "happy": ("AU06", "AU12"),
    "sad": ("AU01", "AU04", "AU15"),
    "surprised": ("AU01", "AU02", "AU05"),
    "fear": ("AU01", "AU02", "AU04", "AU05", "AU20"),
    "angry": ("AU04", "AU05", "AU07", "AU23"),
    "disgusted": ("AU09", "AU10", "AU16"),
    "contempt": ("AU12", "AU14"),
}
NEUTRAL_CLAUSES = ("the face relaxed", "the features at rest", "the expression kept even")

TEMPLATES = (
    "{Subject} speaks with {c1} and {c2}, {degree} {adj}.",
    "{Subject} talks, {c1}, looking {degree} {adj}.",
    "{Degree} {adj}, {subject} says the words with {c1}.",
    "With {c1} and {c2}, {subject} sounds {degree} {adj}.",
    "{Subject} is {degree} {adj} while speaking: {c1}, {c2}.",
    "The face of {subject} shows {noun}, with {c1}.",
    "{Subject} speaks {adv}, {c1}.",
    "{Subject} delivers the sentence {adv}, with {c1} and {c2}.",
)


def intensity_level(value: float) -> int:
    """OpenFace intensity (0-5) -> 0 low, 1 medium, 2 high (callers drop values below 1)."""
    return 0 if value < 2.0 else (1 if value < 3.5 else 2)


def normalise_aus(aus: Mapping[str, float]) -> dict[str, float]:
    """Accept "AU12", "AU12_r" or "12"; keep known AUs."""
    out = {}
    for key, value in aus.items():
        name = str(key).upper().removesuffix("_R")
        name = name if name.startswith("AU") else f"AU{int(name):02d}"
        if name in AU_PHRASES:
            out[name] = float(value)
    return out


def infer_emotion(aus: Mapping[str, float]) -> str:
    """The emotion whose prototype AUs are most active on average (neutral when none is)."""
    aus = normalise_aus(aus)
    scores = {e: np.mean([aus.get(a, 0.0) for a in proto]) for e, proto in EMOTION_PROTOTYPES.items()}
    best = max(scores, key=scores.get)
    return best if scores[best] >= ACTIVE_THRESHOLD else "neutral"


def describe_aus(aus: Mapping[str, float], emotion: str | None, subject: str, n: int,
                 rng: np.random.Generator) -> list[str]:
    """``n`` distinct sentences describing the active AUs and the emotion (inferred if None).

    Args:
        aus: AU intensities on the 0-5 scale.
        emotion: a MEAD emotion name, or None to infer it from the AUs.
        subject: who speaks, capitalised ("A woman", "The speaker").
        n: sentences wanted; fewer come back only when the templates cannot make n distinct ones.
        rng: the source of every choice (deterministic under a seed).
    """
    aus = normalise_aus(aus)
    emotion = emotion or infer_emotion(aus)
    if emotion not in EMOTION_WORDS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {sorted(EMOTION_WORDS)}")
    active = sorted(((v, a) for a, v in aus.items() if v >= ACTIVE_THRESHOLD and a not in SPEECH_AUS), reverse=True)
    overall = intensity_level(np.mean([v for v, _ in active])) if active else 0
    words = EMOTION_WORDS[emotion]
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731

    def clause(au: str, value: float) -> str:
        level = intensity_level(value)
        return pick(AU_PHRASES[au]).format(adv=pick(ADVERBS[level]))

    sentences: list[str] = []
    for _ in range(40 * n):
        if len(sentences) >= n:
            break
        if active:
            chosen = [active[i] for i in sorted(rng.choice(len(active), size=min(2, len(active)), replace=False))]
            clauses = [clause(a, v) for v, a in chosen]
        else:
            clauses = list(rng.choice(NEUTRAL_CLAUSES, size=2, replace=False))
        c1, c2 = clauses[0], clauses[-1] if len(clauses) > 1 else pick(NEUTRAL_CLAUSES if not active else (clauses[0],))
        template = pick(TEMPLATES if c1 != c2 else tuple(t for t in TEMPLATES if "{c2}" not in t))
        degree = pick(DEGREE[overall]) if emotion != "neutral" else "quite"
        text = template.format(Subject=subject, subject=subject[0].lower() + subject[1:], c1=c1, c2=c2,
                               degree=degree, Degree=degree[0].upper() + degree[1:], adj=pick(words["adj"]),
                               adv=pick(words["adv"]), noun=pick(words["noun"]))
        if text not in sentences:
            sentences.append(text)
    return sentences

"""Who speaks and how they feel: procedural speakers and the 8 MEAD emotion profiles.

Expression offsets are written in the stand-in face model's named components
(:data:`~stylization.data.face_model.EXPRESSION_COMPONENTS`), following the FACS
prototypes of each emotion; each component also stands for an OpenFace action unit
(:data:`COMPONENT_AUS`) so the text annotator can describe it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from stylization.constants import ID_DIM
from stylization.data.corpus import MEAD_EMOTIONS
from stylization.data.face_model import EXPRESSION_COMPONENTS

LEVELS = (1, 2, 3)
LEVEL_SCALE = {1: 0.45, 2: 0.75, 3: 1.05}  # multiplies an emotion's offsets and dynamics changes

# Action units each named component imitates (brow_raise covers inner and outer brows).
COMPONENT_AUS: dict[str, tuple[str, ...]] = {
    "jaw_open": ("AU26",), "lip_corner_pull": ("AU12",), "lip_stretch": ("AU20",), "pucker": ("AU18",),
    "brow_raise": ("AU01", "AU02"), "brow_lower": ("AU04",), "eye_close": ("AU45",), "cheek_raise": ("AU06",),
    "lip_corner_depress": ("AU15",), "upper_lip_raise": ("AU10",), "nose_wrinkle": ("AU09",),
    "upper_lid_raise": ("AU05",), "lip_press": ("AU23",), "jaw_sideways": ("AU30",),
    "lower_lip_depress": ("AU16",), "dimple": ("AU14",),
}


@dataclasses.dataclass(frozen=True)
class EmotionProfile:
    """Expression offsets (component -> value at full intensity) and dynamics."""

    offsets: dict[str, float]
    blink_per_second: float
    mouth_gain: float  # multiplies the speech-driven jaw opening
    brow_emphasis: float  # brow raise that follows loudness
    pitch_shift: int  # espeak pitch offset (0-99 scale)
    speed_factor: float  # multiplies the words per minute
    amplitude: int  # espeak amplitude (default 100)


EMOTIONS: dict[str, EmotionProfile] = {
    "neutral": EmotionProfile({}, 0.30, 1.00, 0.10, 0, 1.00, 100),
    "happy": EmotionProfile({"lip_corner_pull": 1.0, "cheek_raise": 0.7}, 0.35, 1.10, 0.15, 10, 1.08, 110),
    "angry": EmotionProfile({"brow_lower": 1.0, "upper_lid_raise": 0.5, "lip_press": 0.8}, 0.20, 1.25, 0.0, 5, 1.10,
                            130),
    "sad": EmotionProfile({"brow_raise": 0.35, "brow_lower": 0.45, "lip_corner_depress": 0.9, "eye_close": 0.2},
                          0.20, 0.70, 0.0, -12, 0.80, 80),
    "surprised": EmotionProfile({"brow_raise": 1.0, "upper_lid_raise": 0.8}, 0.12, 1.25, 0.25, 20, 1.05, 115),
    "fear": EmotionProfile({"brow_raise": 0.6, "brow_lower": 0.4, "upper_lid_raise": 0.7, "lip_stretch": 0.9},
                           0.50, 0.90, 0.10, 15, 1.15, 90),
    "disgusted": EmotionProfile({"nose_wrinkle": 1.0, "upper_lip_raise": 0.7, "lower_lip_depress": 0.4,
                                 "brow_lower": 0.3}, 0.30, 0.80, 0.0, -5, 0.90, 100),
    "contempt": EmotionProfile({"dimple": 0.9, "lip_corner_pull": 0.3, "jaw_sideways": 0.25}, 0.25, 0.80, 0.05, -6,
                               0.95, 95),
}
assert set(EMOTIONS) == set(MEAD_EMOTIONS)


def expression_offset(emotion: str, level: int, exp_dim: int = 64) -> np.ndarray:
    """[exp_dim] static expression of ``emotion`` at ``level`` (zeros for neutral)."""
    out = np.zeros(exp_dim, np.float32)
    for name, value in EMOTIONS[emotion].offsets.items():
        out[EXPRESSION_COMPONENTS.index(name)] = value * LEVEL_SCALE[level]
    return out


def au_intensities(mean_exp: np.ndarray) -> dict[str, float]:
    """Clip-mean expression [64] -> OpenFace-style AU intensities (0-5; 1.0 component = 5)."""
    aus: dict[str, float] = {}
    for i, name in enumerate(EXPRESSION_COMPONENTS):
        for au in COMPONENT_AUS[name]:
            aus[au] = max(aus.get(au, 0.0), float(np.clip(5.0 * mean_exp[i], 0.0, 5.0)))
    return aus


# Voices: espeak-ng variants, split by the gender they sound like.
VOICES = {"woman": ("f1", "f2", "f3", "f4", "f5"), "man": ("m1", "m2", "m3", "m4", "m5", "m6", "m7")}
SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 56, 36]])
HAIR = np.array([[40, 30, 25], [90, 60, 30], [160, 120, 60], [220, 200, 150], [120, 40, 20], [70, 70, 75]])
IRIS = np.array([[70, 110, 160], [90, 70, 40], [60, 120, 80], [50, 40, 30], [110, 120, 130]])


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A procedural identity: face shape, colours, voice and head-motion habits."""

    name: str
    gender: str  # "woman" or "man" (for texts and voice)
    identity: np.ndarray  # [80] identity coefficients of the stand-in model
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    background: tuple[int, int, int]
    hair_style: int  # 0 short, 1 long, 2 bun
    voice: str  # espeak-ng voice, e.g. "en-us+f3"
    pitch: int  # espeak pitch 0-99
    words_per_minute: int
    pose_amplitude: float  # radians of head rotation at most
    pose_seed: int
    # Motion habits (the speaker's talking style, what the reference-frame style transfer learns); all
    # 1 / 0 with motion_styles=0 (every speaker then moves alike, as corpora made before they existed).
    jaw_gain: float = 1.0  # multiplies the speech-driven mouth opening
    nod_gain: float = 0.0  # radians of pitch per unit of speech emphasis: the head nods on loud syllables
    blink_factor: float = 1.0  # multiplies the emotion's blink rate
    sway_tempo: float = 1.0  # multiplies the frequencies of the slow head sway

    @property
    def subject(self) -> str:
        return f"A {self.gender}"


def _colour(c) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(c), 0, 255))


MOTION_HABITS = {  # habit: (low, high, drawn log-uniformly); nod_gain uniformly in [0, 0.08] rad
    "jaw_gain": (0.55, 1.8), "blink_factor": (0.5, 2.0), "sway_tempo": (0.5, 2.0)}
MAX_NOD = 0.08


def motion_habits(index: int, seed: int, strength: float = 1.0) -> dict[str, float]:
    """Speaker ``index``'s motion habits, drawn from their own stream (so the speaker's other traits do
    not change with them) and scaled by ``strength``: 0 gives every speaker the neutral habits (factors
    1, no nod), 1 the full spread, values in between interpolate (geometrically for the factors)."""
    rng = np.random.default_rng([seed, 7919, index, 2])
    out = {name: float(np.exp(strength * rng.uniform(np.log(lo), np.log(hi)))) for name, (lo, hi) in MOTION_HABITS.items()}
    out["nod_gain"] = float(strength * rng.uniform(0.0, MAX_NOD))
    return out


def make_speaker(index: int, seed: int, prefix: str = "S", motion_styles: float = 1.0) -> Speaker:
    """Speaker ``index`` of the corpus with base ``seed`` (independent of how many are made);
    ``motion_styles`` scales how much the speakers' motion habits differ (:func:`motion_habits`)."""
    rng = np.random.default_rng([seed, 7919, index])
    gender = ("woman", "man")[int(rng.integers(2))]
    identity = np.zeros(ID_DIM, np.float32)
    identity[:12] = rng.normal(0.0, 0.9, 12)
    identity[12:] = rng.normal(0.0, 0.5, ID_DIM - 12)
    skin = SKIN[int(rng.integers(len(SKIN)))] + rng.normal(0, 6, 3)
    lips = skin * np.array([0.85, 0.55, 0.55]) + np.array([25, 0, 0])
    background = rng.uniform(60, 230, 3)
    accent = ("en-us", "en-gb", "en")[int(rng.integers(3))]
    voice = f"{accent}+{VOICES[gender][int(rng.integers(len(VOICES[gender])))]}"
    return Speaker(
        name=f"{prefix}{index:03d}", gender=gender, identity=identity, skin=_colour(skin),
        hair=_colour(HAIR[int(rng.integers(len(HAIR)))] + rng.normal(0, 8, 3)),
        iris=_colour(IRIS[int(rng.integers(len(IRIS)))]), lips=_colour(lips), background=_colour(background),
        hair_style=int(rng.integers(3)), voice=voice,
        pitch=int(rng.integers(35, 70) if gender == "woman" else rng.integers(20, 50)),
        words_per_minute=int(rng.integers(145, 185)), pose_amplitude=float(rng.uniform(0.04, 0.12)),
        pose_seed=int(rng.integers(2**31)), **motion_habits(index, seed, motion_styles),
    )

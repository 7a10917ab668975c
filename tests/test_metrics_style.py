"""The reference-frame paper's motion metrics (D-L, D-V, D-A, SLD, SLV, SMD) and CSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylization.metrics.identity import CsimResult, cosine_similarity, csim, csim_frames
from stylization.metrics.style_motion import (
    d_a, d_l, d_v, mouth_area, sld, slv, smd, window_starts, windowed,
)

FACE_WIDTH = 100.0  # px between jaw points 0 and 16 in the faces below


def face(mouth_open: float = 2.0) -> np.ndarray:
    """One [68, 2] face: jaw ends 100 px apart and an inner-lip octagon of half-width 10 and
    half-height ``mouth_open`` (area 2·sqrt(2)·10·mouth_open); other points fixed at random."""
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    pts[0], pts[16] = (0.0, 50.0), (FACE_WIDTH, 50.0)
    # 60 right corner, 61-63 upper lip, 64 left corner, 65-67 lower lip: once around the ellipse
    angles = np.pi - np.arange(8) * np.pi / 4
    pts[60:68] = np.stack([50 + 10 * np.cos(angles), 80 - mouth_open * np.sin(angles)], 1)
    return pts


def offsets(xs) -> np.ndarray:
    """[T, 68, 2]: the face translated by x = xs[t] pixels in frame t."""
    return np.stack([face() + np.array([x, 0.0]) for x in xs])


def talking(n_frames: int, seed: int) -> np.ndarray:
    """[T, 68, 2] a face that moves smoothly and opens its mouth at a random rhythm."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None, None]
    wobble = 3 * np.sin(t / rng.uniform(6, 12, (1, 68, 2)) + rng.uniform(0, 6, (1, 68, 2)))
    rate, phase = rng.uniform(4, 7), rng.uniform(0, 6)
    seq = np.stack([face(2 + 3 * abs(np.sin(k / rate + phase))) for k in range(n_frames)])
    return seq + wobble


# ---- D-L, D-V, D-A ----

def test_a_sequence_against_itself_scores_zero():
    seq = talking(40, seed=1)
    for metric in (d_l, d_v, d_a, sld, slv, smd):
        assert metric(seq, seq) == pytest.approx(0.0, abs=1e-12), metric.__name__


def test_hand_computed_distance_velocity_and_area():
    ref = np.stack([face()] * 5)
    moved = ref + np.array([3.0, 4.0])  # every point 5 px away, no velocity difference
    assert d_l(moved, ref) == pytest.approx(5.0)  # 5 px of a 100 px face: 5 %
    assert d_v(moved, ref) == pytest.approx(0.0)
    drifting = ref + np.arange(5)[:, None, None] * np.array([3.0, 4.0])  # 5 px further each frame
    assert d_v(drifting, ref) == pytest.approx(5.0)
    assert d_l(drifting, ref) == pytest.approx(np.mean([0, 5, 10, 15, 20]))
    assert float(mouth_area(ref)[0]) == pytest.approx(2 * np.sqrt(2) * 10 * 2)  # the octagon's area
    wider = np.stack([face(mouth_open=3.0)] * 5)
    assert d_a(wider, ref) == pytest.approx(50.0)  # half-height 3 against 2: half as much area again
    assert d_a(ref, wider) == pytest.approx(100 / 3)  # relative to the reference's area


def test_frames_without_landmarks_are_left_out():
    ref, gen = talking(12, seed=2), talking(12, seed=3)
    gen_missing = gen.copy()
    gen_missing[0] = np.nan
    # velocity 0 -> 1 is lost with frame 0; the reference's normalisers keep all its frames
    assert d_l(gen_missing, ref) == pytest.approx(
        float(np.mean(np.linalg.norm(gen[1:] - ref[1:], axis=-1).mean(-1))) / np.mean(
            np.linalg.norm(ref[:, 0] - ref[:, 16], axis=-1)) * 100)
    assert np.isfinite(d_v(gen_missing, ref)) and np.isfinite(sld(gen_missing, ref, grid=((4, 2),)))


def test_scale_translation_and_depth_invariance():
    """Frame size and position do not matter: distances are relative to the face width, areas to the
    mouth area. A constant depth column changes nothing either."""
    ref, gen = talking(36, seed=4), talking(36, seed=5)
    grid = ((6, 2), (12, 3))
    moved = lambda x: 2.7 * x + np.array([13.0, -4.0])  # noqa: E731
    depth = lambda x: np.concatenate([x, np.full(x.shape[:2] + (1,), 7.0)], -1)  # noqa: E731
    for metric in (d_l, d_v, d_a):
        base = metric(gen, ref)
        assert metric(moved(gen), moved(ref)) == pytest.approx(base, rel=1e-9)
        assert metric(depth(gen), depth(ref)) == pytest.approx(base, rel=1e-9)
    for metric in (sld, slv, smd):
        assert metric(moved(gen), moved(ref), grid=grid) == pytest.approx(metric(gen, ref, grid=grid), rel=1e-9)
    # torch tensors give the numpy numbers
    assert d_l(torch.from_numpy(gen), torch.from_numpy(ref)) == pytest.approx(d_l(gen, ref))


# ---- Eq. 10: windows, minimum over generated windows, mean over reference windows, grid ----

def test_windows_follow_the_papers_kappa():
    # κ = floor((N - F) / v): N = 5, F = 2, v = 2 -> windows at 0 and 2 (frame 4 is in none)
    assert window_starts(5, 2, 2).tolist() == [0, 2]
    assert window_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert window_starts(4, 4, 1).tolist() == [0]


def test_hand_computed_windowed_scores():
    ref = offsets([0, 10, 20, 30])  # x offsets in px of a 100 px face: 10 px = 10 %
    gen = offsets([20, 30, 0, 0])
    # F = 2, v = 2. Reference windows (0, 10), (20, 30); generated windows (20, 30), (0, 0).
    # (0, 10): against (20, 30) mean(20, 20) = 20, against (0, 0) mean(0, 10) = 5 -> min 5
    # (20, 30): against (20, 30) 0 -> min 0.   SLD = mean(5, 0) = 2.5 %
    assert windowed(gen, ref, "position", 2, 2) == pytest.approx(2.5)
    # velocities: reference windows move +10, +10; generated +10, 0 -> each finds a +10 match
    assert windowed(gen, ref, "velocity", 2, 2) == pytest.approx(0.0)
    # the whole clip as one window is D-L itself: mean(20, 20, 20, 30) = 22.5 %
    assert windowed(gen, ref, "position", 4, 1) == pytest.approx(d_l(gen, ref)) == pytest.approx(22.5)
    # the grid is averaged
    assert sld(gen, ref, grid=((2, 2), (4, 1))) == pytest.approx((2.5 + 22.5) / 2)
    # minimum over generated windows, mean over reference windows: not symmetric. A longer
    # generated clip holding every reference window scores 0; reversed, the reference window
    # (40, 50) finds at best (20, 30): mean(0, 0, 20) %
    longer = offsets([0, 10, 20, 30, 40, 50])
    assert windowed(longer, ref, "position", 2, 2) == pytest.approx(0.0)
    assert windowed(ref, longer, "position", 2, 2) == pytest.approx(20 / 3)


def test_windowed_mouth_area_uses_the_clips_mean_area():
    small, big = face(2.0), face(4.0)  # areas A and 2A
    ref = np.stack([small, small, big, big])  # mean area 1.5 A
    gen = np.stack([big, big, big, big])
    # reference windows (A, A), (2A, 2A); every generated window is (2A, 2A)
    # -> |ΔA| per frame A, then 0: SMD = mean(A, 0) / 1.5 A = 1/3
    assert windowed(gen, ref, "area", 2, 2) == pytest.approx(100 / 3)
    assert smd(gen, ref, grid=((2, 2),)) == pytest.approx(100 / 3)
    assert d_a(gen, ref) == pytest.approx(100 * 0.5 / 1.5)


def test_time_shifted_copy_scores_lower_than_an_unrelated_sequence():
    motion = talking(68, seed=6)
    ref, unrelated = motion[:60], talking(60, seed=7)
    # shifted by 8 frames, a multiple of every default stride: each reference window (but the first
    # few) has an exact match
    shifted = motion[8:]
    for metric in (sld, slv, smd):
        same, other = metric(shifted, ref), metric(unrelated, ref)
        assert same < 0.5 * other, (metric.__name__, same, other)
    # frame-aligned D-L cannot see through the shift; SLD can
    assert sld(shifted, ref) < 0.5 * d_l(shifted, ref)
    # by 5 frames, windows match only to within a frame or two (the stride): positions and
    # velocities still clearly; the fast-changing mouth area (SMD) only barely, so it is not asserted
    shifted = motion[5:65]
    for metric in (sld, slv):
        assert metric(shifted, ref) < 0.5 * metric(unrelated, ref), metric.__name__


def test_errors_name_the_problem():
    ref = talking(10, seed=8)
    with pytest.raises(ValueError, match="window_frames=20"):
        sld(ref, ref, grid=((20, 2),))
    with pytest.raises(ValueError, match="stride_frames=0"):
        windowed(ref, ref, "position", 4, 0)
    with pytest.raises(ValueError, match="frame-aligned"):
        d_l(ref[:9], ref)
    with pytest.raises(ValueError, match=r"\[T, 68, 2 or 3\]"):
        d_l(ref[:, :20], ref[:, :20])
    shut = np.stack([face(mouth_open=0.0)] * 10)
    with pytest.raises(ValueError, match="mouth never opens"):
        d_a(ref, shut)


# ---- CSIM ----

def test_csim_of_embeddings():
    emb = np.random.default_rng(9).normal(size=(6, 128))
    assert csim(emb, emb) == pytest.approx(1.0)
    assert csim(emb, -emb) == pytest.approx(-1.0)
    assert csim(3 * emb, emb) == pytest.approx(1.0)  # cosine: the length does not matter
    assert cosine_similarity(emb, emb[0]).shape == (6,)  # one identity picture for every frame
    assert float(cosine_similarity(emb, emb[0])[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="embeddings"):
        csim(emb, emb[:3])


def test_csim_frames_leaves_out_and_counts_frames_without_a_face():
    frames = np.random.default_rng(10).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    frames[2] = 0
    # a stand-in embedder: the mean colour, no face in a black frame
    embed = lambda img: None if img.max() == 0 else img.reshape(-1, 3).mean(0)  # noqa: E731
    result = csim_frames(frames, frames, embed)
    assert isinstance(result, CsimResult)
    assert result.value == pytest.approx(1.0) and (result.frames_used, result.frames_missed) == (4, 1)
    one = csim_frames(frames, frames[:1], embed)
    assert one.frames_used == 4 and one.value < 1.0
    assert np.isnan(csim_frames(frames[2:3], frames[:1], embed).value)
    with pytest.raises(ValueError, match="source_frames"):
        csim_frames(frames, frames[:2], embed)


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("dlib")
    pytest.importorskip("skimage")
    from stylization.preprocess.faces import FaceEmbedder

    return FaceEmbedder()


def test_dlib_embedder_same_face_above_different_face(embedder):
    from skimage import data, transform

    astronaut = data.astronaut()  # 512 x 512 RGB, one face
    same_person = {
        "flipped": astronaut[:, ::-1],
        "smaller": (transform.rescale(astronaut, 0.75, channel_axis=2) * 255).astype(np.uint8),
        "shifted": astronaut[40:, 30:],
    }
    # other people: LFW faces from skimage's lfw_subset (25 x 25 grey, the first 100 are faces),
    # enlarged so that the detector finds them
    others = [np.repeat((transform.resize(face, (150, 150)) * 255).astype(np.uint8)[..., None], 3, axis=2)
              for face in data.lfw_subset()[[0, 20, 40]]]
    ref = embedder(astronaut)
    assert ref is not None and ref.shape == (128,) and ref.dtype == np.float32

    def sim(image):
        vector = embedder(np.ascontiguousarray(image))
        assert vector is not None, "no face found"
        return float(cosine_similarity(vector[None], ref)[0])

    same = {name: sim(img) for name, img in same_person.items()}
    different = [sim(img) for img in others]
    # measured (dlib 20.0.1): same person 0.99-1.0, the LFW faces 0.78-0.84: dlib's descriptors are
    # not centred, so even different people score far above 0
    assert min(same.values()) > max(different) + 0.05, (same, different)
    assert embedder(np.zeros((64, 64, 3), np.uint8)) is None  # no face: None, not an error
    video = np.stack([astronaut, np.ascontiguousarray(np.roll(astronaut, 8, axis=1))])
    result = csim_frames(video, video, embedder)
    assert result.value == pytest.approx(1.0, abs=1e-6) and result.frames_used == 2
    # the video against its first frame, the self-driven protocol's identity picture
    assert csim_frames(video, video[:1], embedder).value > 0.95


def test_speaker_separation_tells_a_wide_mouth_from_a_narrow_one():
    """Two speakers of the same face moving alike except that one opens the mouth three times as wide:
    SMD tells them apart in every draw, and the report has every metric's means and shares."""
    from stylization.metrics.style_motion import speaker_separation

    def clip(seed: int, jaw: float) -> np.ndarray:
        rng = np.random.default_rng(seed)
        rate, phase = rng.uniform(4, 7), rng.uniform(0, 6)
        return np.stack([face(1 + jaw * abs(np.sin(k / rate + phase))) for k in range(48)])

    clips = {"narrow": [clip(s, 1.0) for s in range(4)], "wide": [clip(10 + s, 3.0) for s in range(4)]}
    out = speaker_separation(clips, pairs=5, seed=1)
    assert set(out) == {f"{m}_{k}" for m in ("sld", "slv", "smd") for k in ("within", "between", "separated")}
    assert out["smd_separated"] == 1.0 and out["smd_between"] > 2 * out["smd_within"]
    with pytest.raises(ValueError):
        speaker_separation({"alone": clips["wide"]})

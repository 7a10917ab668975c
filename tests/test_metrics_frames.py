"""Frame metrics of the benchmark against their references: SSIM / PSNR against piq (ViCo's) and
scikit-image, CPBD against the ``cpbd`` package's own code on the same frames, M-LMD / F-LMD
against a hand computation with a fake detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from stylization.constants import SAMPLES_PER_FRAME
from stylization.data.face_model import stand_in_face_model
from stylization.data.synthetic.motion import clip_coefficients
from stylization.data.synthetic.profiles import make_speaker
from stylization.data.synthetic.render import render_face
from stylization.metrics import coordinate_lmd, cpbd, lmd_frames, psnr_frames, ssim_frames
from stylization.metrics import image as image_metrics
from stylization.metrics.sharpness import _sobel_edges, edge_widths

piq = pytest.importorskip("piq")
MOUTH_POINTS = list(range(48, 68))


def synthetic_frames(resolution: int, n_frames: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 [T, R, R, 3]: a synthetic-corpus speaker (speaker 0 of seed 0) talking, as the
    corpus renders it, driven by noise bursts instead of speech."""
    rng = np.random.default_rng(seed)
    speaker = make_speaker(0, 0)
    envelope = np.repeat(rng.uniform(0, 1, n_frames), SAMPLES_PER_FRAME)
    wav = (0.3 * envelope * rng.normal(size=envelope.size)).astype(np.float32)
    coeffs = clip_coefficients(speaker, "happy", 2, wav, n_frames, resolution, rng)
    landmarks = stand_in_face_model().landmarks_from_coeffs(torch.from_numpy(coeffs), resolution).numpy()
    return np.stack([render_face(lm, speaker, resolution) for lm in landmarks])


def as_unit_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [T, 3, H, W] in [0, 1], as the ViCo baseline feeds piq."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0


# ---------------------------------------------------------------- SSIM / PSNR


@pytest.mark.parametrize("size", [(40, 48), (400, 400)])  # 400 px: piq average-pools by 2 first
def test_vico_definition_is_piq(size):
    rng = np.random.default_rng(1)
    real = rng.integers(0, 256, (3, *size, 3), dtype=np.uint8)
    fake = np.clip(real.astype(int) + rng.integers(-40, 41, real.shape), 0, 255).astype(np.uint8)
    x, y = as_unit_float(fake), as_unit_float(real)
    assert torch.equal(ssim_frames(fake, real), piq.ssim(x, y, data_range=1.0, reduction="none"))
    assert torch.equal(psnr_frames(fake, real), piq.psnr(x, y, data_range=1.0, reduction="none"))
    assert torch.equal(ssim_frames(torch.from_numpy(fake), torch.from_numpy(real)), ssim_frames(fake, real))


def test_frames_are_processed_in_chunks_without_changing_the_values(monkeypatch):
    rng = np.random.default_rng(2)
    real = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    fake = rng.integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    whole = {d: (ssim_frames(fake, real, d), psnr_frames(fake, real, d)) for d in ("vico", "skimage")}
    monkeypatch.setattr(image_metrics, "CHUNK_FRAMES", 2)
    for d, (ssim_whole, psnr_whole) in whole.items():
        assert torch.allclose(ssim_frames(fake, real, d), ssim_whole, rtol=0, atol=1e-6)
        assert torch.allclose(psnr_frames(fake, real, d), psnr_whole, rtol=0, atol=1e-4)


def test_skimage_definition_on_uint8_frames():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    frames = synthetic_frames(64, 4)
    fake, real = frames[1:], frames[:1].repeat(3, 0)  # the "still" baseline against the clip
    ours_ssim, ours_psnr = ssim_frames(fake, real, "skimage"), psnr_frames(fake, real, "skimage")
    for t in range(3):
        a, b = fake[t] / 255.0, real[t] / 255.0
        want = skimage_metrics.structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False, data_range=1.0)
        assert ours_ssim[t].item() == pytest.approx(want, abs=1e-6)
        assert ours_psnr[t].item() == pytest.approx(skimage_metrics.peak_signal_noise_ratio(b, a, data_range=1.0),
                                                    abs=1e-4)


def test_identical_frames_give_one_and_the_documented_psnr_cap():
    frames = synthetic_frames(32, 2)
    for definition, cap_db in (("vico", 80.0), ("skimage", 100.0)):
        assert torch.allclose(ssim_frames(frames, frames, definition), torch.ones(2))
        assert torch.allclose(psnr_frames(frames, frames, definition), torch.full((2,), cap_db))


def test_the_two_ssim_definitions_on_synthetic_frames():
    """The numbers docs/benchmark.md quotes: the same up to 383 px, apart at 512 px where piq pools."""
    gaps = {}
    for resolution in (256, 512):
        clip = synthetic_frames(resolution, 9)
        pairs = {"still": (clip[:1].repeat(4, 0), clip[5:]), "shift5": (clip[:4], clip[5:])}
        for name, (fake, real) in pairs.items():
            vico, ours = ssim_frames(fake, real, "vico"), ssim_frames(fake, real, "skimage")
            gaps[resolution, name] = (vico.mean().item(), ours.mean().item(), (vico - ours).abs().max().item())
    for key, (vico, ours, gap) in sorted(gaps.items()):
        print(f"{key}: vico {vico:.5f}  skimage {ours:.5f}  max per-frame |difference| {gap:.2e}")
    assert max(gaps[256, name][2] for name in ("still", "shift5")) < 1e-5
    assert min(gaps[512, name][2] for name in ("still", "shift5")) > 1e-3


def test_frame_checks_name_the_problem():
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="uint8 frames"):
        ssim_frames(frames.astype(np.float32), frames)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_frames(frames, frames[:1])
    with pytest.raises(ValueError, match="definition must be one of"):
        ssim_frames(frames, frames, "matlab")


# ---------------------------------------------------------------- CPBD


@pytest.fixture(scope="module")
def reference_cpbd():
    """The ``cpbd`` package (1.0.7). Its module imports ``scipy.ndimage.imread`` (gone since SciPy
    1.2) for its command line only, so a placeholder is put there for the import."""
    import scipy.ndimage

    pytest.importorskip("skimage")
    added = not hasattr(scipy.ndimage, "imread")
    if added:
        scipy.ndimage.imread = None
    try:
        compute = pytest.importorskip("cpbd.compute")
        octave = pytest.importorskip("cpbd.octave")
    finally:
        if added:
            del scipy.ndimage.imread
    return compute, octave


def test_edge_widths_equal_the_package(reference_cpbd):
    compute, octave = reference_cpbd
    rng = np.random.default_rng(3)
    # Rising ramps with a two-pixel step at 200 (an edge whose walks both pass the 100-step cap) and a
    # mirrored tail from 330 (an edge with a falling side).
    x = np.arange(420)
    ramp = np.tile(0.5 * x + 20.0 * (x >= 200) + 40.0 * (x >= 201), (6, 1))
    ramp[:, 330:] = ramp[:, 330:][:, ::-1]
    images = [ramp, rng.integers(0, 256, (40, 56)).astype(np.float64),
              cv2.cvtColor(synthetic_frames(96, 1)[0], cv2.COLOR_RGB2GRAY).astype(np.float64)]
    for image in images:
        sobel = octave.sobel(image)
        assert np.array_equal(_sobel_edges(image), sobel)
        want = compute.marziliano_method(sobel, image)
        assert want.max() > 0
        assert np.array_equal(edge_widths(image, sobel), want)
    assert edge_widths(images[0], octave.sobel(images[0])).max() == 202  # 2 + 100 + 100: the cap


def test_cpbd_equals_the_package_on_the_same_frames(reference_cpbd):
    compute, _ = reference_cpbd
    clip = synthetic_frames(128, 3)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip])
    noise = np.random.default_rng(4).integers(0, 256, (1, 136, 200, 3), dtype=np.uint8)  # partial blocks too
    for frames in (clip, blurred, noise):
        ours = cpbd(frames)
        # The ViCo baseline's path: frames read by OpenCV (BGR), then BGR2GRAY.
        want = [compute.compute(cv2.cvtColor(np.ascontiguousarray(f[..., ::-1]), cv2.COLOR_BGR2GRAY)) for f in frames]
        assert ours.dtype == torch.float64 and ours.shape == (len(frames),)
        assert ours.tolist() == want
    assert cpbd(clip).mean() > cpbd(blurred).mean()


def test_cpbd_without_blocks_or_edges_is_zero_and_checks_its_input():
    assert cpbd(np.zeros((1, 40, 300, 3), np.uint8)).tolist() == [0.0]  # shorter than one 64 px block
    assert cpbd(np.full((1, 64, 64, 3), 128, np.uint8)).tolist() == [0.0]  # a flat frame has no edges
    with pytest.raises(ValueError, match="RGB uint8 frames"):
        cpbd(np.zeros((64, 64, 3), np.uint8))


# ---------------------------------------------------------------- M-LMD / F-LMD


def test_coordinate_lmd_matches_a_hand_computation():
    rng = np.random.default_rng(5)
    gt = rng.uniform(0, 256, (4, 68, 2))
    gen = gt + rng.normal(0, 3, gt.shape)
    gt[1] = np.nan  # no face in the ground truth: not counted
    gen[2] = np.nan  # a face in the ground truth, none generated: missed
    used = [0, 3]
    by_hand_f = np.mean([abs(gen[t, i, c] - gt[t, i, c]) for t in used for i in range(68) for c in (0, 1)])
    by_hand_m = np.mean([abs(gen[t, i, c] - gt[t, i, c]) for t in used for i in MOUTH_POINTS for c in (0, 1)])
    result = coordinate_lmd(gen, gt)
    assert result.f_lmd == pytest.approx(by_hand_f, rel=1e-12)
    assert result.m_lmd == pytest.approx(by_hand_m, rel=1e-12)
    assert (result.frames_used, result.frames_missed) == (2, 1)
    none = coordinate_lmd(gen[1:3], gt[1:3])
    assert np.isnan(none.f_lmd) and (none.frames_used, none.frames_missed) == (0, 1)
    with pytest.raises(ValueError, match=r"\[T, 68, 2\]"):
        coordinate_lmd(gen[:, :20], gt[:, :20])


class FakeDetector:
    """Landmarks read off flat frames: every point at (template + red, template + 2·green), no face
    in a black frame; records the frame sizes it was given."""

    def __init__(self):
        self.template = np.random.default_rng(6).uniform(0, 200, (68, 2))
        self.sizes = []

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.sizes.append(frames.shape[1:3])
        colour = frames.reshape(len(frames), -1, 3).mean(1)  # [T, 3]
        out = self.template[None] + np.stack([colour[:, 0], 2 * colour[:, 1]], -1)[:, None]
        out[colour.sum(1) == 0] = np.nan
        return out


def test_video_lmd_with_a_fake_detector_resizes_and_skips_faceless_frames():
    colours_gt = np.array([[10, 20, 0], [0, 0, 0], [30, 5, 0], [50, 50, 50]])
    colours_gen = np.array([[13, 24, 0], [9, 9, 9], [0, 0, 0], [50, 47, 1]])
    flat = lambda colours, side: np.broadcast_to(  # noqa: E731
        colours[:, None, None].astype(np.uint8), (len(colours), side, side, 3)).copy()
    detector = FakeDetector()
    result = lmd_frames(flat(colours_gen, 48), flat(colours_gt, 160), detector, size=128)
    assert detector.sizes == [(128, 128), (128, 128)]
    # frame 0: |dx| 3, |dy| 2*4; frame 3: |dx| 0, |dy| 2*3; frame 1 has no ground-truth face, frame 2 no generated one
    assert result.f_lmd == pytest.approx((3 + 8 + 0 + 6) / 4)
    assert result.m_lmd == pytest.approx(result.f_lmd)
    assert (result.frames_used, result.frames_missed) == (2, 1)
    same = lmd_frames(flat(colours_gt, 64), flat(colours_gt, 64), FakeDetector(), size=None)
    assert same.f_lmd == same.m_lmd == 0.0 and same.frames_used == 3
    with pytest.raises(ValueError, match="trim them"):
        lmd_frames(flat(colours_gen, 48), flat(colours_gt[:2], 48), detector)

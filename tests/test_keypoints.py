"""Keypoint conditioning of from-scratch Style-A models, the EMA warm-up and the speech-sync figure."""

import math

import numpy as np
import pytest
import torch

from stylization.constants import BROWS, INNER_LIP_PAIRS, JAW, MOUTH, SAMPLE_RATE
from stylization.data.render_inputs import RenderInputs
from stylization.engine.ema import EMA
from stylization.metrics.speech_sync import inner_lip_gap, loudness_envelope, speech_sync
from stylization.style_a.keypoints import KEYPOINT_CHANNELS, KEYPOINT_GROUPS, KeypointSFT, keypoint_heatmaps
from stylization.style_a.style_a import StyleAGenerator


def small_generator(keypoints: bool) -> StyleAGenerator:
    torch.manual_seed(0)
    return StyleAGenerator(in_size=128, out_size=128, style_dim=16, n_mlp=7, channel_multiplier=1, num_res_layers=1,
                           channel_cap=8, motion_size=64, motion_base_nc=4, motion_max_nc=8, motion_encoder_layers=2,
                           motion_decoder_layers=2, mapping_layers=1, descriptor_nc=8, refinement_width=8,
                           align_corners=True, warp_content=True, keypoints=keypoints)


def test_heatmaps_peak_where_the_points_fall():
    lm = torch.full((1, 68, 2), 10.0)
    lm[0, MOUTH[0]] = torch.tensor([40.0, 20.0])  # (x, y) in a 128 px frame
    maps = keypoint_heatmaps(lm, 128, 128)
    assert maps.shape == (1, KEYPOINT_CHANNELS, 128, 128) and KEYPOINT_CHANNELS == 24
    assert divmod(int(maps[0, 0].argmax()), 128) == (20, 40) and float(maps[0, 0].max()) == pytest.approx(1.0)
    # at half the size, a pixel centre x maps to x / 2 - 0.25 (the peak straddles pixels 19 and 20)
    half = keypoint_heatmaps(lm, 128, 64)[0, 0]
    assert divmod(int(half.argmax()), 64) == (10, 20) and float(half[10, 19]) == pytest.approx(float(half[10, 20]) * math.exp(
        -((19 - 19.75) ** 2 - (20 - 19.75) ** 2) / 2), rel=1e-5)
    # a group channel is the maximum of its points' Gaussians; the mouth points have one each
    pts = torch.rand(2, 68, 2) * 127
    maps = keypoint_heatmaps(pts, 128, 32)
    single = torch.stack([keypoint_heatmaps(pts[:, [i] * 68], 128, 32)[:, 0] for i in range(68)], 1)
    assert torch.allclose(maps[:, 20], single[:, list(JAW)].amax(1)) and KEYPOINT_GROUPS[20] == JAW
    assert torch.allclose(maps[:, 21], single[:, list(BROWS)].amax(1))
    assert torch.allclose(maps[:, :20], single[:, list(MOUTH)])


def test_keypoint_sft_starts_as_the_identity():
    sft = KeypointSFT(6)
    feature, maps = torch.randn(2, 6, 32, 32), torch.rand(2, KEYPOINT_CHANNELS, 16, 16)
    assert torch.equal(sft(feature, maps), feature)
    torch.nn.init.normal_(sft.out.weight)
    assert not torch.allclose(sft(feature, maps), feature)


def test_keypoint_generator_draws_the_target_keypoints():
    g = small_generator(keypoints=True)
    plain = small_generator(keypoints=False)
    extra = {n for n, _ in g.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert extra and all(n.startswith("keypoint_sft.") for n in extra)  # the paper layout is untouched when off
    assert g.motion.warpping_net.hourglass.encoder.input_layer.in_channels == 3 + KEYPOINT_CHANNELS
    b, r = 1, 2
    content, codes = torch.randn(b, 22, 128, 128), torch.randn(b, g.n_latent, 16)
    window = torch.zeros(b * r, 73, 27)
    with pytest.raises(ValueError, match="keypoints"):
        g(content, codes, codes, window, repeats=r)
    kp = torch.rand(1, 68, 2) * 100 + 10
    opened = kp.clone()
    opened[0, 56:59, 1] += 6  # the lower lip drops
    for p in g.keypoint_sft.parameters():  # trained SFT heads: the drawn keypoints now reach the image
        torch.nn.init.normal_(p, std=0.3)
    out = g(content, codes, codes, window, repeats=r, keypoints=torch.cat([kp, opened]))
    assert out["image"].shape == (2, 3, 128, 128)
    diff = (out["image"][0] - out["image"][1]).abs().sum(0)
    assert diff.max() > 1e-3
    # the change is local: largest around the moved lip (x ~ kp[56:59, 0], y ~ kp + 6), not at the far corner
    x, y = int(kp[0, 57, 0]), int(kp[0, 57, 1]) + 3
    assert diff[max(y - 12, 0):y + 12, max(x - 12, 0):x + 12].max() > 5 * diff[:20, :20].max()
    out["image"].mean().backward()
    assert g.keypoint_sft[1].out.weight.grad.abs().sum() > 0
    assert g.motion.warpping_net.hourglass.encoder.input_layer.weight.grad[:, 3:].abs().sum() > 0


def test_keypoint_sft_trains_with_the_motion_group():
    g = small_generator(keypoints=True)
    g.configure_trainable({"backbone": False, "modres": False, "content": False, "motion": True, "refinement": False})
    assert all(p.requires_grad for p in g.keypoint_sft.parameters())
    assert {id(p) for p in g.keypoint_sft.parameters()} <= {id(p) for p in g.trainable_groups()["motion"]}


def test_drive_keypoints_follow_the_source_fit():
    rng = np.random.default_rng(3)
    projected = rng.uniform(60, 160, (68, 2))
    angle, scale, shift = np.deg2rad(7.0), 1.13, np.array([4.0, -9.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    detected = projected @ rot.T + shift + rng.normal(0, 0.5, (68, 2))  # the fit's residual
    targets = projected[None] + rng.normal(0, 3, (5, 68, 2))
    inputs = RenderInputs(content_size=128, code_size=64, identity_alignment="crop", parsing="landmarks")
    out = inputs.drive_keypoints(projected, targets, detected, crop_size=256)
    assert out.shape == (5, 68, 2) and out.dtype == torch.float32
    expected = (targets @ rot.T + shift) * 0.5
    assert np.abs(out.numpy() - expected).max() < 0.3  # the transform is recovered from the noisy fit
    still = inputs.drive_keypoints(projected, np.repeat(projected[None], 3, 0), detected, 256).numpy()
    assert np.abs(still - still[:1]).max() == 0  # the source's own coefficients: the same keypoints every frame


def test_ema_rampup_follows_stylegan2_ada():
    ema = EMA(torch.nn.Linear(2, 2), decay=0.995, rampup=0.05)
    assert ema.decay_at(1) == pytest.approx(0.5 ** 20)
    assert ema.decay_at(100) == pytest.approx(0.5 ** (1 / 5))  # half-life 5 steps after 100
    assert ema.decay_at(10_000) == 0.995  # half-life capped by the decay's own (138 steps)
    assert EMA(torch.nn.Linear(2, 2), decay=0.995).decay_at(1) == 0.995
    module = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(module, decay=0.9, rampup=0.5)
    expected = float(module.weight.detach())
    for step in range(1, 6):
        module.weight.data.fill_(float(step))
        ema.update(module, step)
        d = min(0.9, 0.5 ** (1 / (0.5 * step)))
        expected = d * expected + (1 - d) * step
        assert float(ema.shadow.weight) == pytest.approx(expected)
    with pytest.raises(ValueError, match="update count"):
        ema.update(module)


def test_speech_sync_scores_a_mouth_that_opens_with_the_voice():
    fps, n = 25, 100
    t = np.arange(n * SAMPLE_RATE // fps) / SAMPLE_RATE
    loud = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) ** 2  # a syllable rhythm
    wav = np.sin(2 * np.pi * 180 * t) * loud
    envelope = loudness_envelope(wav, n, fps)
    assert envelope.shape == (n,) and np.corrcoef(envelope, np.sin(2 * np.pi * 1.3 * (np.arange(n) + 0.5) / fps) ** 2)[0, 1] > 0.95
    lm = np.zeros((n, 68, 2))
    lm[:, 48], lm[:, 54] = [40, 80], [80, 80]  # mouth 40 px wide
    for up, low in INNER_LIP_PAIRS:
        lm[:, up] = np.stack([np.full(n, 60.0), 80 - 10 * envelope], 1)
        lm[:, low] = np.stack([np.full(n, 60.0), 80 + 10 * envelope], 1)
    gaps = inner_lip_gap(lm)
    assert np.allclose(gaps, 20 * envelope / 40)
    assert speech_sync(gaps, wav, fps) == pytest.approx(1.0)
    assert speech_sync(-gaps, wav, fps) == pytest.approx(-1.0)
    assert math.isnan(speech_sync(np.full(n, 0.1), wav, fps))  # a still mouth
    valid = np.ones(n, bool)
    valid[::2] = False
    noisy = gaps.copy()
    noisy[::2] = 5.0  # frames without a face are left out
    assert speech_sync(noisy, wav, fps, valid=valid) == pytest.approx(1.0)


def test_speech_sync_of_the_corpus_clips(synthetic_corpus):
    """The synthetic clips' own landmarks follow their speech: the figure the demo video is held to."""
    from stylization.data.audio import load_audio
    from stylization.data.corpus import Corpus

    corpus = Corpus(synthetic_corpus)
    scores = [speech_sync(inner_lip_gap(corpus.load_landmarks(rec)), load_audio(corpus.path(rec, "audio")))
              for rec in corpus.clips()[:6]]
    assert min(scores) > 0.4 and np.mean(scores) > 0.5


def test_landmark_tracking_keeps_the_last_box(synthetic_corpus):
    import cv2

    from stylization.data.corpus import Corpus
    from stylization.data.video import read_video
    from stylization.preprocess.faces import LandmarkDetector

    corpus = Corpus(synthetic_corpus)
    rec = corpus.clips("test")[0]
    frames = np.stack([cv2.resize(f, (256, 256), interpolation=cv2.INTER_CUBIC)
                       for f in read_video(corpus.path(rec, "video"))[:3]])
    blank = np.full_like(frames[0], 128)
    video = np.stack([blank, frames[0], blank, frames[1], frames[2]])
    landmarks, found = LandmarkDetector("dlib").track(video)
    assert found.tolist() == [False, True, False, True, True]
    assert np.isnan(landmarks[0]).all() and not np.isnan(landmarks[1:]).any()
    truth = corpus.load_landmarks(rec)[:3] * 4
    assert np.abs(landmarks[[1, 3, 4]] - truth).mean() < 4.0

"""SyncNet v2 and the lip-sync scores: the official layout and strict loading, the two embedding towers,
the offset search (LSE-D, LSE-C, AV offset) against a loop-by-loop copy of the official's definition and
on planted offsets, python_speech_features' MFCC, the official face crop, and one clip end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import check_checkpoint, read_manifest
from torch import nn

from stylization.constants import SAMPLE_RATE, SAMPLES_PER_FRAME
from stylization.errors import CheckpointError
from stylization.loading import load_official
from stylization.metrics.sync import (PAIRWISE_EPS, int16_scale, mfcc, offset_distances, sync_from_embeddings,
                                      sync_scores)
from stylization.syncnet.evaluate import embed_clip, evaluate, face_crops, window_count
from stylization.syncnet.model import SyncNet

MANIFEST = "syncnet_v2.tsv"


# ---- layout, loading ----

def official_state(seed: int = 0, counters: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors with the manifest's names and shapes (BN variances positive); ``counters=False``
    leaves out ``num_batches_tracked``, as a file saved before torch 0.4.1 would."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in read_manifest(MANIFEST):
        if name.endswith("num_batches_tracked"):
            if counters:
                state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        else:
            state[name] = 0.05 * torch.randn(shape, generator=g)
    return state


def test_layout_equals_the_manifest():
    net = SyncNet(1024)
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == read_manifest(MANIFEST)
    assert all(v.dtype == (torch.long if k.endswith("num_batches_tracked") else torch.float32)
               for k, v in net.state_dict().items())
    assert sum(p.numel() for p in net.parameters()) == 13_631_616


@pytest.mark.parametrize("counters", [True, False])
def test_official_file_loads_strictly(tmp_path, counters):
    state = official_state(counters=counters)
    torch.save(state, tmp_path / "syncnet_v2.model")  # the release is a plain state dict
    net = load_official("syncnet", tmp_path / "syncnet_v2.model")
    loaded = net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    if not counters:
        assert int(loaded["netcnnlip.1.num_batches_tracked"]) == 0


def test_a_wrong_file_names_the_keys(tmp_path):
    state = official_state()
    del state["netcnnlip.18.weight"]
    state["netcnnaud.0.weight"] = torch.zeros(64, 1, 5, 5)
    torch.save(state, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match=r"missing \['netcnnlip.18.weight'\].*mis-shaped"):
        load_official("syncnet", tmp_path / "bad.model")
    torch.save({"model": official_state()}, tmp_path / "nested.model")
    with pytest.raises(CheckpointError, match="plain state dict"):
        load_official("syncnet", tmp_path / "nested.model")


def test_check_checkpoint_script(tmp_path):
    torch.save(official_state(counters=False), tmp_path / "syncnet_v2.model")
    res = check_checkpoint("syncnet", tmp_path / "syncnet_v2.model")
    assert res.returncode == 0, res.stderr


# ---- the towers ----

def test_embeddings_follow_the_official_forward():
    torch.manual_seed(0)
    net = SyncNet(1024)
    net.load_state_dict(official_state(seed=1))
    net.eval()
    video = 255 * torch.rand(1, 3, 5, 224, 224)
    mfccs = torch.randn(2, 1, 13, 20)
    with torch.no_grad():
        v, a = net(video, mfccs)
        # forward_lip / forward_aud as written upstream: the tower, a view to [N, -1], the head
        v_ref = net.netfclip(net.netcnnlip(video).view(1, -1))
        a_ref = net.netfcaud(net.netcnnaud(mfccs).view(2, -1))
        a_one = net.embed_audio(mfccs[1:])
    assert v.shape == (1, 1024) and a.shape == (2, 1024)
    assert net.netcnnlip(video).shape == (1, 512, 1, 1, 1)
    assert torch.equal(v, v_ref) and torch.equal(a, a_ref)
    torch.testing.assert_close(a_one, a[1:], rtol=1e-5, atol=1e-5)  # eval mode: windows are independent
    with pytest.raises(ValueError, match=r"video windows must be \[N, 3, 5, 224, 224\]"):
        net.embed_video(torch.zeros(1, 3, 5, 112, 112))
    with pytest.raises(ValueError, match=r"audio windows must be \[N, 1, 13, 20\]"):
        net.embed_audio(torch.zeros(1, 13, 20))


# ---- the offset search ----

def official_distances(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> torch.Tensor:
    """SyncNetInstance's calc_pdist, one pair at a time: audio zero-padded by vshift rows at both ends."""
    rows = []
    for i in range(len(video)):
        row = []
        for j in range(2 * vshift + 1):
            k = i + j - vshift
            other = audio[k] if 0 <= k < len(audio) else torch.zeros_like(audio[0])
            row.append(torch.sqrt(((video[i] - other + PAIRWISE_EPS) ** 2).sum()))
        rows.append(torch.stack(row))
    return torch.stack(rows)


@pytest.mark.parametrize("n, vshift", [(12, 4), (5, 7)])  # also a clip shorter than the search
def test_distances_are_the_officials(n, vshift):
    g = torch.Generator().manual_seed(n)
    video, audio = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
    ours = offset_distances(video, audio, vshift)
    assert ours.shape == (n, 2 * vshift + 1)
    torch.testing.assert_close(ours, official_distances(video, audio, vshift), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours, torch.stack([torch.nn.functional.pairwise_distance(
        video[[i]].repeat(2 * vshift + 1, 1),
        torch.nn.functional.pad(audio, (0, 0, vshift, vshift))[i:i + 2 * vshift + 1]) for i in range(n)]))


def test_scores_of_a_hand_curve():
    # one window, vshift 2: offsets +2, +1, 0, -1, -2 have distances 5, 3, 4, 1, 6
    scores = sync_scores(torch.tensor([[5.0, 3.0, 4.0, 1.0, 6.0]]), vshift=2)
    assert scores == {"lse_d": 1.0, "lse_c": 3.0, "offset": -1}  # median 4 - min 1; vshift - argmin = 2 - 3
    with pytest.raises(ValueError, match=r"\[N >= 1, 31\]"):
        sync_scores(torch.zeros(3, 5))


def planted(k: int, n: int = 60, dim: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Video embeddings that show the audio's content k frames late: video[i] = audio[i - k] (random
    where i - k falls outside the clip)."""
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(n, dim, generator=g)
    video = torch.randn(n, dim, generator=g)
    for i in range(n):
        if 0 <= i - k < n:
            video[i] = audio[i - k]
    return video, audio


@pytest.mark.parametrize("k", [0, 3, 5, -4, 15])
def test_the_search_finds_a_planted_offset(k):
    video, audio = planted(k)
    scores = sync_from_embeddings(video, audio)
    assert scores["offset"] == k
    curve = offset_distances(video, audio).mean(0)
    assert scores["lse_d"] == pytest.approx(float(curve.min()))
    assert scores["lse_c"] > 0.5 * float(curve.median())  # a sharp dip: high confidence


def test_in_sync_scores_lower_than_shifted():
    synced = sync_from_embeddings(*planted(0))
    shifted = offset_distances(*planted(5)).mean(0)[15]  # the shifted pair's distance at offset 0
    assert synced["lse_d"] < 0.2 * float(shifted)
    noise = sync_from_embeddings(*planted(100))  # no frame of the video shows the audio
    assert synced["lse_c"] > 5 * noise["lse_c"]


# ---- MFCC ----

def reference_mfcc(signal: np.ndarray, rate: int = 16000) -> np.ndarray:
    """python_speech_features.mfcc's steps with its defaults, loop by loop."""
    x = np.asarray(signal, np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])
    frame, hop, nfft, nfilt, ncep = 400, 160, 512, 26, 13
    count = 1 if len(x) <= frame else 1 + int(math.ceil((len(x) - frame) / hop))
    x = np.concatenate([x, np.zeros((count - 1) * hop + frame - len(x))])
    mel = np.linspace(0, 2595 * np.log10(1 + (rate / 2) / 700.0), nfilt + 2)
    edge = np.floor((nfft + 1) * (700 * (10 ** (mel / 2595.0) - 1)) / rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(edge[j]), int(edge[j + 1])):
            bank[j, i] = (i - edge[j]) / (edge[j + 1] - edge[j])
        for i in range(int(edge[j + 1]), int(edge[j + 2])):
            bank[j, i] = (edge[j + 2] - i) / (edge[j + 2] - edge[j + 1])
    n = np.arange(nfilt)
    out = np.zeros((count, ncep))
    for f in range(count):
        spectrum = np.abs(np.fft.rfft(x[f * hop:f * hop + frame], nfft)) ** 2 / nfft
        energy = spectrum.sum() or np.finfo(float).eps
        bands = bank @ spectrum
        bands[bands == 0] = np.finfo(float).eps
        logs = np.log(bands)
        for c in range(ncep):  # orthonormal DCT-II
            scale = np.sqrt(1 / nfilt) if c == 0 else np.sqrt(2 / nfilt)
            out[f, c] = scale * np.sum(logs * np.cos(np.pi * c * (2 * n + 1) / (2 * nfilt)))
            out[f, c] *= 1 + 11 * np.sin(np.pi * c / 22)
        out[f, 0] = np.log(energy)
    return out


def speech_like(frames: int, seed: int = 0) -> np.ndarray:
    """int16 samples: a 200 Hz tone whose loudness changes every video frame, one silent frame."""
    rng = np.random.default_rng(seed)
    loud = np.repeat(rng.uniform(0.02, 0.5, frames), SAMPLES_PER_FRAME)
    loud[SAMPLES_PER_FRAME:2 * SAMPLES_PER_FRAME] = 0
    t = np.arange(frames * SAMPLES_PER_FRAME) / SAMPLE_RATE
    wav = loud * np.sin(2 * np.pi * 200 * t) + 0.003 * rng.standard_normal(len(t)) * (loud > 0)
    return np.round(wav * 32767).astype(np.int16)


def test_mfcc_is_python_speech_features():
    wav = speech_like(10)
    ours = mfcc(wav)
    assert ours.shape == (4 * 10 - 1, 13)  # 1 + ceil((6400 - 400) / 160) steps of 10 ms
    np.testing.assert_allclose(ours, reference_mfcc(wav), rtol=1e-9, atol=1e-9)
    assert mfcc(wav[:300]).shape == (1, 13)  # shorter than one 25 ms frame: one zero-padded frame
    assert np.isfinite(mfcc(np.zeros(1000, np.int16))).all()  # silence: eps, not log(0)
    # float input in [-1, 1] is read as the int16 the official's ffmpeg would write
    np.testing.assert_allclose(mfcc(int16_scale(wav / 32768.0)), ours, atol=1e-9)


def test_mfcc_equals_the_package_where_installed():
    psf = pytest.importorskip("python_speech_features")
    wav = speech_like(12, seed=3)
    np.testing.assert_allclose(mfcc(wav), psf.mfcc(wav, 16000), rtol=1e-9, atol=1e-9)


# ---- the crop ----

def test_the_official_crop_around_a_box():
    size, frames = 100, 13
    rows, cols = np.mgrid[0:size, 0:size]
    frame = np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)  # R = row, G = column
    boxes = np.tile([30.0, 20.0, 70.0, 60.0], (frames, 1))  # s = 20, centre (x 50, y 40)
    crops = face_crops(np.repeat(frame[None], frames, 0), boxes, size=56)
    # rows cy - s .. cy + 1.8 s = 20..76, columns cx - 1.4 s .. cx + 1.4 s = 22..78, then BGR
    np.testing.assert_array_equal(crops[6], frame[20:76, 22:78, ::-1])
    # a box at the border reaches into the grey padding
    edge = face_crops(frame[None], np.array([[0.0, 0.0, 40.0, 40.0]]), size=56)
    # s = 20, centre (20, 20): rows 0..56, columns -8..48, the first 8 columns grey
    assert (edge[0, :, :8] == 110).all() and tuple(edge[0, 40, 40]) == (7, 32, 40)
    whole = face_crops(frame[None], size=224)
    assert whole.shape == (1, 224, 224, 3) and whole[0, 0, 0, 0] == 7  # no box: the whole frame, BGR


# ---- one clip end to end ----

class LoudnessNet(nn.Module):
    """A stand-in SyncNet whose embeddings are the z-scored brightness of the 5 frames (video) and the
    z-scored amplitude exp(c0 / 2) at each frame's first MFCC step (audio): equal when the frames'
    brightness follows the audio's loudness."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the module a device

    @staticmethod
    def _z(x):
        return (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)

    def embed_video(self, frames):
        return self._z(frames.mean((1, 3, 4)))

    def embed_audio(self, mfccs):
        return self._z(torch.exp(mfccs[:, 0, 0, ::4] / 2))


def loudness_clip(frames: int, delay: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frames [T, 16, 16, 3] whose brightness is the loudness of the audio ``delay`` frames
    earlier (random before that), and the int16 audio."""
    rng = np.random.default_rng(seed)
    loud = rng.uniform(0.05, 0.5, frames)
    t = np.arange(frames * SAMPLES_PER_FRAME) / SAMPLE_RATE
    wav = np.round(32767 * np.repeat(loud, SAMPLES_PER_FRAME) * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    shown = np.concatenate([rng.uniform(0.05, 0.5, delay), loud])[:frames] if delay >= 0 else \
        np.concatenate([loud[-delay:], rng.uniform(0.05, 0.5, -delay)])
    video = np.broadcast_to(np.round(shown * 500).astype(np.uint8)[:, None, None, None], (frames, 16, 16, 3))
    return np.ascontiguousarray(video), wav


@pytest.mark.parametrize("delay", [0, 5, -3])
def test_evaluate_finds_a_delayed_video(delay):
    frames, wav = loudness_clip(40, delay)
    scores = evaluate(LoudnessNet().eval(), frames, wav)
    assert set(scores) == {"lse_d", "lse_c", "offset"}
    assert scores["offset"] == delay and scores["lse_c"] > 1.0


def test_evaluate_with_the_real_network():
    net = SyncNet(1024).eval()
    frames, wav = loudness_clip(7, 0)
    assert window_count(7, len(wav)) == 2 and window_count(7, len(wav) - 1) == 1
    video, audio = embed_clip(net, frames, wav)
    assert video.shape == audio.shape == (2, 1024) and torch.isfinite(video).all()
    scores = sync_from_embeddings(video, audio, vshift=3)
    assert -3 <= scores["offset"] <= 3 and scores["lse_c"] >= 0 and math.isfinite(scores["lse_d"])
    with pytest.raises(ValueError, match="training mode"):
        evaluate(net.train(), frames, wav)
    with pytest.raises(ValueError, match="at least 6 frames"):
        evaluate(net.eval(), frames[:5], wav)

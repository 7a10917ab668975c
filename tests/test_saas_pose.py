"""SAAS's audio-to-pose predictor: the released layout (strict load of a file written from the manifest),
the forward against a reference written the official way (per-step audio loop, q/kv concatenated then cut,
the gen_mask mask on the score block), mask_index semantics, top-p sampling, the MFCC windows, and the
generation loop against the official loop written out step by step."""

import math

import numpy as np
import pytest
import torch
from conftest import read_manifest
from scipy.signal import savgol_filter

from stylization.errors import CheckpointError
from stylization.loading import load_official
from stylization.data.mfcc import frame_mfcc_windows, mfcc, speech_mfcc_windows
from stylization.saas.codebook import VQCodebook
from stylization.saas.pose import (AudioPosePredictor, generate_poses, nucleus_sample, sample_mask_index,
                                   smooth_poses)

N_CODES = 12


def tiny_predictor(seed: int = 0) -> AudioPosePredictor:
    """Small sizes, weights and BatchNorm statistics perturbed away from the (mostly trivial) initial ones."""
    torch.manual_seed(seed)
    model = AudioPosePredictor(hidden=16, layers=2, heads=2, ffn=8, n_codes=N_CODES, style_dim=8,
                               audio_channels=(2, 3, 4, 4, 4), audio_hidden=8, audio_dim=8)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            one = 1.0 if "norm" in name and name.endswith("weight") else 0.0  # LayerNorm gains about 1
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.2) + one)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.2)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return model.eval()


def tiny_codebook(seed: int = 0) -> VQCodebook:
    torch.manual_seed(seed)
    cb = VQCodebook(in_dim=6, dim=16, layers=1, heads=2, ffn=8, n_codes=N_CODES, classes=4)
    with torch.no_grad():
        cb.quantize.embedding.weight.normal_()
    return cb.eval()


def inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 32, 28, 12, generator=g) * 3, torch.randn(b, 8, generator=g),
            torch.randint(N_CODES, (b, 4), generator=g))


# ---- the official forward, written as FACTModel / base_models compute it ----

def _gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))


def _mlp(block, x):
    return block.fn.fn.l2(_gelu(block.fn.fn.l1(block.fn.norm(x))))


def _cut(qkv, heads):
    """einops 'b n (qkv h d) -> qkv b h n d' with qkv=3."""
    b, n, width = qkv.shape
    d = width // 3 // heads
    return [qkv[..., i * heads * d:(i + 1) * heads * d].reshape(b, n, heads, d).transpose(1, 2) for i in range(3)]


def _attend(q, k, v, scale, to_out, mask=None, max_mask=None):
    dots = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if max_mask is not None:
        dots[:, :, :max_mask, :max_mask] = dots[:, :, :max_mask, :max_mask].masked_fill(mask == 0.0, float("-inf"))
    out = torch.einsum("bhij,bhjd->bhid", dots.softmax(-1), v)
    return to_out(out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1))


def _self_transformer(net, x, mask=None, max_mask=None):
    for i in range(0, len(net), 2):
        att = net[i].fn.fn
        q, k, v = _cut(att.to_qkv(net[i].fn.norm(x)), att.heads)
        x = x + _attend(q, k, v, x.shape[-1] ** -0.5, att.to_out, mask, max_mask)
        x = x + _mlp(net[i + 1], x)
    return x


def official_forward(m, audio, style, past, mask_index):
    b, p = past.shape
    dim = m.listener_past_tok_embedding.embedding_dim
    max_mask = mask = None
    if mask_index >= 0:  # gen_mask with an explicit index, max_mask = 4
        max_mask, mask = p, torch.zeros(b, p, p)
        if mask_index > 0:
            mask[:, -mask_index:, :] += 1.0
        mask = mask.unsqueeze(1)
    if mask_index < 0:
        feats = m.listener_past_tok_embedding(past) + m.listener_past_pos_embedding.pos_embedding
        feats = _self_transformer(m.listener_past_transformer.net, feats)
    else:
        feats = torch.zeros(b, p, dim)
        if mask_index > 0:
            feats[:, -mask_index:, :] = m.listener_past_tok_embedding(past[:, -mask_index:])
        feats = feats + m.listener_past_pos_embedding.pos_embedding
    steps = []
    for t in range(audio.shape[1]):  # one MFCC window at a time
        h = m.audio_eocder(audio[:, t, :, :].unsqueeze(1))
        steps.append(m.audio_eocder_fc(h.view(h.size(0), -1)))
    x_a = m.audio_projector(torch.stack(steps, 1)) + m.audio_full_pos_embedding.pos_embedding
    x_b = m.motion_projector(style).unsqueeze(1).repeat(1, x_a.shape[1], 1) + m.motion_full_pos_embedding.pos_embedding
    net = m.cm_transformer.net
    for i in range(0, len(net), 2):
        att = net[i].fn.fn
        qkv = torch.cat([att.to_q(x_a), att.to_kv(net[i].fn.norm(x_b))], -1)
        q, k, v = _cut(qkv, att.heads)
        x_b = x_b + _attend(q, k, v, x_b.shape[-1] ** -0.5, att.to_out)
        x_b = x_b + _mlp(net[i + 1], x_b)
    speaker = m.post_projector(m.post_compressor(x_b.permute(0, 2, 1)).permute(0, 2, 1))
    layer = m.cross_modal_layer
    merged = torch.cat([feats, speaker], 1) + layer.cross_pos_embedding.pos_embedding
    merged = _self_transformer(layer.transformer_layer.net, merged, mask, max_mask)
    return layer.cross_output_layer(layer.cross_norm_layer(merged))


# ---- layout and loading ----

def test_released_layout_loads_strictly(tmp_path):
    manifest = read_manifest("saas_audio2pose.tsv")
    assert all(name.startswith("module.") for name, _ in manifest)
    model = AudioPosePredictor()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [(n[7:], s) for n, s in manifest]
    assert sum(p.numel() for p in model.parameters()) == 33_396_360
    g = torch.Generator().manual_seed(0)
    state = {n: (torch.randn(s, generator=g) if s else torch.tensor(3)) for n, s in manifest}
    for n in state:
        if n.endswith("running_var"):
            state[n] = state[n].abs() + 0.5
    path = tmp_path / "audio2pose.pth"
    torch.save({"state_dict": state, "optimizer": {"n_steps": 3}, "epoch": 2, "config": "audio2pose.json"}, path)
    loaded = load_official("saas_audio2pose", path).eval()
    assert torch.equal(loaded.audio_eocder[0][0].weight, state["module.audio_eocder.0.0.weight"])
    assert torch.equal(loaded.cross_modal_layer.cross_output_layer.weight,
                       state["module.cross_modal_layer.cross_output_layer.weight"])
    audio, _, past = inputs(2)
    with torch.no_grad():
        assert loaded(audio, torch.randn(2, 256), past % 200, 0).shape == (2, 8, 200)
    torch.save({"state_dict": {"module.quantize.embedding.weight": torch.zeros(200, 256)}}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="audio_eocder"):
        load_official("saas_audio2pose", tmp_path / "wrong.pth")


# ---- the forward ----

@pytest.mark.parametrize("mask_index", [-1, 0, 1, 2, 3, 4, 6])
def test_forward_is_the_official_computation(mask_index):
    model = tiny_predictor()
    audio, style, past = inputs()
    with torch.no_grad():
        ours = model(audio, style, past, mask_index)
        ref = official_forward(model, audio, style, past, mask_index)
    assert ours.shape == (3, 8, N_CODES)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_audio_encoder_batched_equals_per_step():
    model = tiny_predictor()
    audio = inputs()[0]
    with torch.no_grad():
        per_step = torch.stack([model.audio_eocder_fc(model.audio_eocder(audio[:, t, None]).flatten(1))
                                for t in range(audio.shape[1])], 1)
        torch.testing.assert_close(model.encode_audio(audio), per_step, rtol=1e-5, atol=1e-6)


def test_mask_index_semantics():
    model = tiny_predictor()
    audio, style, past = inputs()
    changed = past.clone()
    changed[:, :2] = (changed[:, :2] + 5) % N_CODES  # the first two tokens only
    other = (past + 7) % N_CODES  # every token
    with torch.no_grad():
        for k in (1, 2):  # the last k tokens are untouched: same output
            torch.testing.assert_close(model(audio, style, past, k), model(audio, style, changed, k), rtol=0, atol=0)
        torch.testing.assert_close(model(audio, style, past, 0), model(audio, style, other, 0), rtol=0, atol=0)
        for k in (3, 4, 7, -1):  # these see a changed token
            assert not torch.allclose(model(audio, style, past, k), model(audio, style, changed, k))
        assert torch.equal(model(audio, style, past, 4), model(audio, style, past, 9))  # k >= 4: all of the past
        assert not torch.allclose(model(audio, style, past, 4), model(audio, style, past, -1))  # -1: past transformer
    draws = {sample_mask_index(torch.Generator().manual_seed(s)) for s in range(300)}
    assert draws == set(range(21))


# ---- sampling ----

def test_nucleus_sample():
    logits = torch.randn(5, 7, N_CODES)
    torch.testing.assert_close(nucleus_sample(logits, 1e-6, torch.Generator().manual_seed(0)), logits.argmax(-1))
    assert torch.equal(nucleus_sample(logits, 0.0), logits.argmax(-1))
    assert torch.equal(nucleus_sample(logits, 0.9, greedy=True), logits.argmax(-1))
    a = nucleus_sample(logits, 0.9, torch.Generator().manual_seed(3))
    assert a.shape == (5, 7) and a.dtype == torch.long
    assert torch.equal(a, nucleus_sample(logits, 0.9, torch.Generator().manual_seed(3)))
    # probabilities 0.5, 0.3, 0.15, 0.05 in a shuffled order; top-p 0.7 keeps the first two by mass
    # (0.5 <= 0.7 before the second, 0.8 > 0.7 before the third), drawn 5:3
    probs = torch.tensor([0.15, 0.05, 0.5, 0.3])
    many = probs.log().expand(4000, 4)
    drawn = nucleus_sample(many, 0.7, torch.Generator().manual_seed(1))
    assert set(drawn.tolist()) == {2, 3}
    assert abs(float((drawn == 2).float().mean()) - 0.625) < 0.03
    assert set(nucleus_sample(many, 0.85, torch.Generator().manual_seed(1)).tolist()) == {0, 2, 3}
    # temperature first: at 0.5 the masses become 0.25/0.09/0.0225/0.0025 (normalised 0.687, 0.247, ...)
    assert set(nucleus_sample(many, 0.6, torch.Generator().manual_seed(1), temperature=0.5).tolist()) == {2}
    assert set(nucleus_sample(many, 0.7, torch.Generator().manual_seed(1), temperature=0.5).tolist()) == {2, 3}


# ---- MFCC windows ----

def test_mfcc_windows_layout():
    steps = np.arange(50 * 13, dtype=np.float64).reshape(50, 13)  # row r = 13 r .. 13 r + 12
    w = frame_mfcc_windows(steps, 6)  # 50 // 4 - 6 = 6 windows
    assert w.shape == (6, 28, 12) and w.dtype == np.float32
    for j in range(6):
        np.testing.assert_array_equal(w[j], steps[4 * j:4 * j + 28, 1:].astype(np.float32))
    longer = frame_mfcc_windows(steps, 9)
    np.testing.assert_array_equal(longer[:6], w)
    assert all(np.array_equal(longer[j], w[5]) for j in (6, 7, 8))
    np.testing.assert_array_equal(frame_mfcc_windows(steps, 4), w[:4])


def speech(seconds=1.3, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * np.abs(np.sin(2 * np.pi * 2 * t))
            + 0.02 * rng.normal(size=len(t))).astype(np.float32)


def test_speech_mfcc_windows_is_generate_mfcc():
    wav = speech()
    padded = np.concatenate([np.zeros(1920), wav, np.zeros(1920)])
    steps = mfcc(padded, 16000)
    n = len(steps) // 4 - 6
    assert abs(n - len(wav) / 640) < 1.5  # about one window per 25 fps frame
    np.testing.assert_array_equal(speech_mfcc_windows(wav, n), frame_mfcc_windows(steps, n))
    psf = pytest.importorskip("python_speech_features")
    # generate_mfcc as written: librosa's float32 samples, np.insert / np.append padding, the window loop
    official = psf.mfcc(np.append(np.insert(wav, 0, np.zeros(1920)), np.zeros(1920)), 16000, winstep=0.01)
    windows, ind = [], 3
    while ind <= int(official.shape[0] / 4) - 4:
        windows.append(torch.FloatTensor(official[(ind - 3) * 4:(ind + 4) * 4, 1:]))
        ind += 1
    torch.testing.assert_close(torch.from_numpy(speech_mfcc_windows(wav, len(windows))), torch.stack(windows),
                               rtol=1e-5, atol=1e-4)


# ---- generation ----

def test_smooth_poses_is_savitzky_golay():
    t = np.arange(60, dtype=np.float64)
    quad = np.stack([0.01 * t ** 2 - t + 3, -0.5 * t], 1)[None]  # order 2 preserves a quadratic everywhere
    np.testing.assert_allclose(smooth_poses(quad), quad, atol=1e-9)
    noisy = np.sin(t / 5)[None, :, None] + 0.1 * np.random.default_rng(0).normal(size=(1, 60, 1))
    np.testing.assert_allclose(smooth_poses(noisy), savgol_filter(noisy, 13, 2, axis=1))
    as_tensor = smooth_poses(torch.from_numpy(noisy).float())
    assert torch.is_tensor(as_tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_allclose(as_tensor.numpy(), savgol_filter(noisy.astype(np.float32), 13, 2, axis=1), atol=1e-6)
    clean = np.sin(t / 5)[None, :, None]
    assert np.abs(smooth_poses(noisy) - clean).mean() < np.abs(noisy - clean).mean()


def official_loop(pred, cb, audio, style, first):
    """gen_pose / generate_one with the greedy choice, step by step as written there."""
    target_len = cur_len = audio.shape[1]
    while int(cur_len / 32) * 32 != cur_len:
        audio = torch.cat([audio, audio[:, (cur_len - 1):cur_len]], 1)
        cur_len = audio.shape[1]
    b = audio.shape[0]
    listener_past = cb.encode(first)["indices"].reshape(b, -1)
    logits = pred(audio[:, :32], style, listener_past, 0)
    prediction = torch.cat((listener_past, logits[:, 0].argmax(-1, keepdim=True)), -1)
    for t in range(0, cur_len - 32, 8):
        listener_in = prediction[:, int(t / 8):int((t + 32) / 8)]
        logits = pred(audio[:, (t + 8):(t + 32 + 8)], style, listener_in, int(t / 8))
        if t == cur_len - 32 - 8:
            for k in range(4):
                prediction = torch.cat((prediction, logits[:, k].argmax(-1, keepdim=True)), 1)
        else:
            prediction = torch.cat((prediction, logits[:, 0].argmax(-1, keepdim=True)), 1)
    prediction = prediction[:, 4:]
    decoded = None
    for t in range(0, prediction.shape[-1] - 3):
        cur = cb.decode_indices(prediction[:, t:t + 4].reshape(-1), b)
        piece = cur if t == prediction.shape[-1] - 4 else cur[:, :8]
        decoded = piece if decoded is None else torch.cat((decoded, piece), 1)
    return savgol_filter(decoded.numpy(), 13, 2, axis=1)[:, :target_len]


def test_generate_poses_is_the_official_loop():
    pred, cb = tiny_predictor(), tiny_codebook()
    g = torch.Generator().manual_seed(5)
    audio, style = torch.randn(2, 72, 28, 12, generator=g) * 3, torch.randn(2, 8, generator=g)
    first = torch.randn(2, 32, 6, generator=g)
    with torch.no_grad():
        ref = official_loop(pred, cb, audio, style, first)
    out = generate_poses(pred, cb, audio, style, first, top_p=0.0)
    assert out.shape == (2, 72, 6)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out, generate_poses(pred, cb, audio, style, first, top_p=0.0))  # greedy: deterministic
    # the official schedule never lets the first 32 frames' tokens reach a prediction
    assert torch.equal(out, generate_poses(pred, cb, audio, style, first * 3 + 1, top_p=0.0))
    raw = generate_poses(pred, cb, audio, style, first, top_p=0.0, smooth=False)
    assert not torch.allclose(raw, out)
    # smoothed over the extended 96 frames, then cut: the last 6 frames (half a window) are not those of
    # smoothing the cut 72 frames, the others are
    smoothed_after_cut = smooth_poses(raw)
    torch.testing.assert_close(smoothed_after_cut[:, :66], out[:, :66])
    assert not torch.allclose(smoothed_after_cut[:, 66:], out[:, 66:])


def test_generate_poses_lengths_and_sampling():
    pred, cb = tiny_predictor(1), tiny_codebook(1)
    g = torch.Generator().manual_seed(6)
    audio, style = torch.randn(2, 45, 28, 12, generator=g) * 3, torch.randn(2, 8, generator=g)
    first = torch.randn(2, 32, 6, generator=g)
    for frames in (45, 20, 64):  # not a multiple of 32; shorter than the official loop allows; exact
        a = audio if frames <= 45 else torch.cat([audio, audio[:, -1:].expand(-1, frames - 45, -1, -1)], 1)
        assert generate_poses(pred, cb, a[:, :frames], style, first, top_p=0.0).shape == (2, frames, 6)
    one = generate_poses(pred, cb, audio, style, first, top_p=0.9, generator=torch.Generator().manual_seed(1))
    again = generate_poses(pred, cb, audio, style, first, top_p=0.9, generator=torch.Generator().manual_seed(1))
    other = generate_poses(pred, cb, audio, style, first, top_p=0.9, generator=torch.Generator().manual_seed(2))
    assert torch.equal(one, again)
    assert not torch.allclose(one, other)

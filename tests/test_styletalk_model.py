"""StyleTalk's generator in the released layout: strict loading of styletalk_checkpoint.pth (written here
from the manifest), the dynamic FFN and the attention pooling against hand computations, padding
invariance of the style code, the official phoneme windows."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, read_manifest, write_official

from stylization.data.phonemes import phoneme_windows
from stylization.errors import CheckpointError
from stylization.loading import load_official
from stylization.styletalk.model import (LOWER_FACE, AttentionPooling, DynamicLinear, StyleTalk, sinusoid_table)


def test_layout_is_the_released_one():
    model = StyleTalk()
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == read_manifest("styletalk_generator.tsv")
    assert sum(p.numel() for p in model.parameters()) == 22_442_689  # the reference README's count


def test_the_released_file_loads_strictly_and_runs(tmp_path):
    path = tmp_path / "styletalk_checkpoint.pth"
    manifest = read_manifest("styletalk_generator.tsv")
    write_official(path, manifest, "model_state_dict", extra=None, epoch=3)
    state = torch.load(path, weights_only=True)["model_state_dict"]
    state["discriminator.w"] = torch.zeros(2)  # another prefix: ignored, as the official loader ignores it
    torch.save({"model_state_dict": state}, path)
    model = load_official("styletalk", path).eval()
    ph = torch.from_numpy(phoneme_windows(np.random.default_rng(0).integers(0, 41, 12)))[None]  # [1, 12, 11]
    with torch.no_grad():
        exp = model(ph, torch.randn(1, 40, 64))
    assert exp.shape == (1, 12, 64) and torch.isfinite(exp).all()
    from stylization.runs import load_styletalk  # inference takes the released file, or its folder, too

    for given in (path, tmp_path):
        motion = load_styletalk(given)
        code = motion.style_code(np.zeros((300, 64), np.float32))  # longer than 256 frames: cropped
        assert motion.generate(np.zeros(12, np.int64), code).shape == (12, 64)
    done = subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", "styletalk", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1].startswith("OK"), done.stderr[-500:]
    torch.save({"model_state_dict": {k: v for k, v in state.items() if "lower_tail_fc.4" not in k}}, path)
    with pytest.raises(CheckpointError, match=r"missing \['decoder.lower_tail_fc.4"):
        load_official("styletalk", path)
    torch.save({"net_G_ema": {}}, path)
    done = subprocess.run([sys.executable, "scripts/check_checkpoint.py", "--kind", "styletalk", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "not a StyleTalk checkpoint" in done.stderr and "Traceback" not in done.stderr


def test_dynamic_linear_mixes_its_kernels_per_item():
    torch.manual_seed(0)
    layer = DynamicLinear(6, 5, 8, kernels=3, ratio=2)
    x, cond = torch.randn(4, 2 * 3, 6), torch.randn(2, 8)  # [L, B·N, in] (N = 3 frames per item), [B, c]
    out = layer(x, cond)
    d = layer.dynamic_conv
    for b in range(2):
        logits = d.attention.net[2].weight[:, :, 0, 0] @ torch.relu(d.attention.net[0].weight[:, :, 0, 0] @ cond[b])
        a = torch.softmax(logits / 30.0, 0)
        weight = sum(a[k] * d.weight[k, :, :, 0, 0] for k in range(3))
        bias = sum(a[k] * d.bias[k] for k in range(3))
        rows = slice(3 * b, 3 * b + 3)  # item b's frames
        torch.testing.assert_close(out[:, rows], x[:, rows] @ weight.T + bias)


def test_the_style_code_ignores_padding():
    """A clip of 100 frames padded to 256 (mask True on the padding) has the code of the 100 frames."""
    torch.manual_seed(0)
    encoder = StyleTalk().style_encoder.eval()
    exp = torch.randn(1, 100, 64)
    padded = torch.cat([exp, torch.randn(1, 156, 64)], 1)
    mask = torch.zeros(1, 256, dtype=torch.bool)
    mask[:, 100:] = True
    with torch.no_grad():
        torch.testing.assert_close(encoder(padded, mask), encoder(exp), atol=1e-4, rtol=1e-4)
    pool = AttentionPooling(4)
    x = torch.randn(1, 3, 4)
    weights = torch.softmax(pool.W(x).squeeze(-1), -1)
    torch.testing.assert_close(pool(x), (weights[..., None] * x).sum(1))


def test_windows_positions_and_face_split():
    labels = torch.tensor([3, 4, 5])
    assert phoneme_windows(labels.numpy()).tolist()[0] == [31] * 5 + [3, 4, 5] + [31] * 3  # SIL pads, as the official
    table = sinusoid_table(11, 256)[0]
    assert table[0, 0] == 0 and table[0, 1] == 1 and torch.isclose(table[3, 2], torch.tensor(np.sin(3 / 10000 ** (2 / 256))).float())
    assert len(LOWER_FACE) == 13 and StyleTalk().decoder.upper == tuple(i for i in range(64) if i not in LOWER_FACE)

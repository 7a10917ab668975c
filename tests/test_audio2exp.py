"""Audio2Exp: SadTalker's parameter layout at full size, and a small one that learns."""

import torch
from conftest import read_manifest

from stylization.style_e.audio2exp import Audio2Exp


def test_full_size_matches_the_sadtalker_manifest():
    manifest = read_manifest("sadtalker_audio2exp.tsv")
    with torch.device("meta"):
        net = Audio2Exp()
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == manifest  # names, order, shapes


def test_generated_sadtalker_checkpoint_loads_strictly(tmp_path):
    """SadTalker saves {'model': state_dict, 'epoch': ...}; ours must accept the state dict as is."""
    official = Audio2Exp()
    torch.save({"model": official.state_dict(), "epoch": 300}, tmp_path / "auido2exp_00300-model.pth")
    state = torch.load(tmp_path / "auido2exp_00300-model.pth", weights_only=True)["model"]
    net = Audio2Exp()
    net.load_state_dict(state, strict=True)
    net.eval()
    official.eval()
    mel = torch.randn(2, 3, 1, 80, 16)
    src, blink = torch.randn(2, 64), torch.rand(2, 3)
    assert torch.equal(net(mel, src, blink), official(mel, src, blink))


def test_small_model_shapes_and_fit():
    torch.manual_seed(0)
    net = Audio2Exp(channels=(8, 16, 32, 64, 128))
    mel = torch.randn(4, 5, 1, 80, 16)
    target = torch.randn(4, 5, 64) * 0.1
    out = net(mel, torch.zeros(4, 64), torch.zeros(4, 5))
    assert out.shape == (4, 5, 64)
    assert net(mel, torch.zeros(4, 5, 64), torch.zeros(4, 5)).shape == (4, 5, 64)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for _ in range(30):
        loss = ((net(mel, torch.zeros(4, 64), torch.zeros(4, 5)) - target) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first

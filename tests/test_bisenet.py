"""BiSeNet face parsing: the official layout, 19-class output at the input size, plain-file loading,
and the parsing map fed to VToonify-D's content encoder computed as VToonify computes it."""

import torch
import torch.nn.functional as F
from conftest import check_checkpoint as check
from conftest import read_manifest
from torch import nn

from stylization.constants import IMAGENET_MEAN, IMAGENET_STD
from stylization.style_a.bisenet import BiSeNet
from stylization.style_a.renderer import StyleARenderer


def test_layout_forward_and_checkpoint(tmp_path):
    manifest = read_manifest("bisenet_faceparsing_vtoonify.tsv")
    net = BiSeNet(19).eval()
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == manifest
    assert sum(p.numel() for p in net.parameters()) == 13_300_416
    with torch.no_grad():
        out, aux16, aux32 = net(2 * (torch.rand(2, 3, 64, 96) * 2 - 1))
    assert out.shape == aux16.shape == aux32.shape == (2, 19, 64, 96) and torch.isfinite(out).all()
    torch.save(net.state_dict(), tmp_path / "faceparsing.pth")  # the release is a plain state dict
    res = check("bisenet", tmp_path / "faceparsing.pth")
    assert res.returncode == 0 and "13,300,416 parameters" in res.stdout, res.stderr


def official_vtoonify_parsing(parser, x):
    """VToonify's steps, written out (style_transfer.py and vtoonify_model.py at inference): the frame
    x in [-1, 1] upsampled 2x bilinearly (align_corners=False), BiSeNet on 2*x (no ImageNet
    statistics), its main logits subsampled back with interpolate's default mode, nearest."""
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return F.interpolate(parser(2 * up)[0], scale_factor=0.5, recompute_scale_factor=False)


def test_parse_is_vtoonifys_parsing_map():
    torch.manual_seed(0)
    parser = BiSeNet(19).eval()
    renderer = StyleARenderer(nn.Identity(), nn.Identity(), parser)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = renderer.parse(x)
        official = official_vtoonify_parsing(parser, x)
        full = parser(2 * F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))[0]
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        big = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        imagenet = F.interpolate(parser(((big + 1) / 2 - mean) / std)[0], size=(64, 64), mode="bilinear",
                                 align_corners=False)  # face-parsing.PyTorch's convention, resized bilinearly
    assert ours.shape == (2, 19, 64, 64)
    assert torch.equal(ours, official)
    assert torch.equal(ours, full[..., ::2, ::2])  # nearest: every second logit of the 128² map, unblended
    # the old path (ImageNet-normalised input, bilinear reduction) gives another map
    assert (ours - imagenet).abs().mean() > 0.05 * ours.abs().mean()
    content = renderer.content_input(x)
    assert torch.equal(content[:, 3:], official / 16) and torch.equal(content[:, :3], x)  # VToonify's x_p / 16

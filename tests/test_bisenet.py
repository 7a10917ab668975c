"""BiSeNet face parsing: the official layout, 19-class output at the input size, plain-file loading."""

import torch
from conftest import check_checkpoint as check
from conftest import read_manifest

from stylization.style_a.bisenet import BiSeNet, normalise_for_parsing


def test_layout_forward_and_checkpoint(tmp_path):
    manifest = read_manifest("bisenet_faceparsing_vtoonify.tsv")
    net = BiSeNet(19).eval()
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == manifest
    assert sum(p.numel() for p in net.parameters()) == 13_300_416
    with torch.no_grad():
        out, aux16, aux32 = net(normalise_for_parsing(torch.rand(2, 3, 64, 96) * 2 - 1))
    assert out.shape == aux16.shape == aux32.shape == (2, 19, 64, 96) and torch.isfinite(out).all()
    torch.save(net.state_dict(), tmp_path / "faceparsing.pth")  # the release is a plain state dict
    res = check("bisenet", tmp_path / "faceparsing.pth")
    assert res.returncode == 0 and "13,300,416 parameters" in res.stdout, res.stderr

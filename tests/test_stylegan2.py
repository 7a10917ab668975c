"""StyleGAN2 in plain PyTorch: the FIR op against a naive reference, the official layouts,
small models forward and backward, and the checkpoint tool on official-format files."""

import argparse
import os

import numpy as np
import pytest
import torch
from conftest import check_checkpoint as check
from conftest import read_manifest, write_official

from stylization.style_a.stylegan2 import Discriminator, Generator, Upsample, make_kernel, upfirdn2d


def naive_upfirdn2d(x, kernel, up, down, pad):
    """Loops over output pixels: zero-insertion upsampling, padding, true convolution, decimation."""
    x = np.asarray(x, np.float64)
    k = np.asarray(kernel, np.float64)
    b, c, h, w = x.shape
    upx = np.zeros((b, c, h * up, w * up))
    upx[:, :, ::up, ::up] = x
    p0, p1 = pad
    padded = np.zeros((b, c, h * up + p0 + p1, w * up + p0 + p1))
    src = upx[:, :, max(-p0, 0): h * up - max(-p1, 0), max(-p0, 0): w * up - max(-p1, 0)]
    padded[:, :, max(p0, 0): max(p0, 0) + src.shape[2], max(p0, 0): max(p0, 0) + src.shape[3]] = src
    kh, kw = k.shape
    out_h, out_w = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    out = np.zeros((b, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = (patch * k[::-1, ::-1]).sum((2, 3))  # convolution: flipped kernel
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up, down, pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (0, 0)),
                                           (1, 1, (-1, 2))])
def test_upfirdn2d_matches_the_naive_reference(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 6)).astype(np.float32)
    kernel = rng.normal(size=(4, 4)).astype(np.float32)  # asymmetric: checks the flip
    ours = upfirdn2d(torch.from_numpy(x), torch.from_numpy(kernel), up, down, pad).numpy()
    np.testing.assert_allclose(ours, naive_upfirdn2d(x, kernel, up, down, pad), atol=1e-5)


def test_fir_upsampling_keeps_a_constant_image_constant():
    up = Upsample((1, 3, 3, 1))
    out = up(torch.ones(1, 2, 8, 8))
    assert out.shape == (1, 2, 16, 16)
    assert torch.allclose(out[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12), atol=1e-6)
    assert make_kernel([1, 3, 3, 1]).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("cls, name", [(Generator, "stylegan2_generator_1024.tsv"),
                                       (Discriminator, "stylegan2_discriminator_1024.tsv")])
def test_full_size_layouts_match_the_manifests(cls, name):
    manifest = read_manifest(name)
    with torch.device("meta"):
        module = cls(1024)
    assert [(k, list(v.shape)) for k, v in module.state_dict().items()] == manifest


def small_generator():
    torch.manual_seed(0)
    return Generator(32, style_dim=32, n_mlp=2, channel_cap=16)


def test_generator_codes_noise_and_truncation():
    g = small_generator()
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    img, latent = g(z, return_latents=True)
    assert img.shape == (3, 3, 32, 32) and latent.shape == (3, g.n_latent, 32) and torch.isfinite(img).all()
    assert torch.equal(img, g(z)[0])  # stored noise: deterministic
    w = g.style(z)
    assert torch.allclose(g(w, input_is_latent=True)[0], img, atol=1e-6)
    assert torch.allclose(g(latent, input_is_latent=True)[0], img, atol=1e-6)  # w+ input
    r1 = g(z, randomize_noise=True, generator=torch.Generator().manual_seed(5))[0]
    r2 = g(z, randomize_noise=True, generator=torch.Generator().manual_seed(5))[0]
    assert torch.equal(r1, r2)
    with torch.no_grad():
        for conv in g.convs:
            conv.noise.weight.fill_(1.0)
    assert not torch.allclose(g(z, randomize_noise=True, generator=torch.Generator().manual_seed(6))[0],
                              g(z)[0])
    mean = g.mean_latent(256, generator=torch.Generator().manual_seed(0))
    collapsed = g(z, truncation=0.0, truncation_latent=mean)[0]
    assert torch.allclose(collapsed[0], collapsed[2], atol=1e-6)  # truncation 0: every sample is the mean face
    with pytest.raises(ValueError, match="truncation_latent"):
        g(z, truncation=0.5)


def test_truncation_only_below_one_as_rosinality():
    """rosinality's Generator.forward truncates only ``if truncation < 1``: ψ >= 1 is no truncation
    (no extrapolation away from the mean), ψ < 1 interpolates towards it."""
    g = small_generator()
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    mean = g.mean_latent(256, generator=torch.Generator().manual_seed(0))
    plain, latent = g(z, return_latents=True)
    for psi in (1.0, 1.5, 3.0):
        img, lat = g(z, truncation=psi, truncation_latent=mean, return_latents=True)
        assert torch.equal(img, plain) and torch.equal(lat, latent)
    assert torch.equal(g(z, truncation=1.5)[0], plain)  # no centre needed when nothing is truncated
    _, half = g(z, truncation=0.5, truncation_latent=mean, return_latents=True)
    assert torch.allclose(half, mean[:, None] + 0.5 * (latent - mean[:, None]), atol=1e-6)
    _, zero = g(z, truncation=0.5, truncation_latent=0, return_latents=True)  # DualStyleGAN / VToonify pass 0
    assert torch.allclose(zero, 0.5 * latent, atol=1e-6)


def test_style_mixing_uses_the_second_code_after_the_inject_index():
    g = small_generator()
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    _, latent = g([z1, z2], inject_index=3, return_latents=True)
    assert torch.allclose(latent[:, 2], g.style(z1)) and torch.allclose(latent[:, 3], g.style(z2))
    _, drawn = g([z1, z2], return_latents=True, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == latent.shape


def test_generator_and_discriminator_train():
    g = small_generator()
    d = Discriminator(32, channel_cap=16)
    for batch in (3, 5):  # minibatch-stddev groups must divide the batch
        img, _ = g(torch.randn(batch, 32))
        logits = d(img)
        assert logits.shape == (batch, 1)
        logits.mean().backward()
    assert all(p.grad is not None for p in g.parameters() if p.requires_grad and p.ndim > 0)


def test_check_checkpoint_on_official_format_files(tmp_path):
    manifest = read_manifest("stylegan2_generator_1024.tsv")
    good = tmp_path / "stylegan2-ffhq-config-f.pt"
    write_official(good, manifest, "g_ema", latent_avg=torch.randn(512))
    out = check("stylegan2_generator", good)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("OK") and "30,370,060 parameters" in out.stdout

    def fails(path, kind, message):
        res = check(kind, path)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res

    fails(tmp_path / "absent.pt", "stylegan2_generator", "not found")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    fails(truncated, "stylegan2_generator", "cannot be loaded safely")
    missing = tmp_path / "missing.pt"
    write_official(missing, manifest, "g_ema", drop="conv1.noise.weight")
    fails(missing, "stylegan2_generator", "missing ['conv1.noise.weight']")
    extra = tmp_path / "extra.pt"
    write_official(extra, manifest, "g_ema", extra={"style.9.weight": torch.zeros(512, 512)})
    fails(extra, "stylegan2_generator", "unexpected ['style.9.weight']")
    fails(good, "stylegan2_discriminator", "no 'd' entry")


def test_deep3d_recon_net_layout_and_checkpoint(tmp_path):
    from stylization.preprocess.recon_net import ReconNet

    manifest = read_manifest("deep3d_recon_net.tsv")
    net = ReconNet().eval()
    assert [(k, list(v.shape)) for k, v in net.state_dict().items()] == manifest
    coeffs = net(torch.rand(2, 3, 224, 224))
    assert coeffs.shape == (2, 257) and torch.count_nonzero(coeffs) == 0  # zero-initialised heads: the mean face
    state = {k: (v + 0.01 if v.is_floating_point() else v) for k, v in net.state_dict().items()}
    torch.save({"net_recon": state, "opt_00": {}}, tmp_path / "epoch_20.pth")
    out = check("deep3d_recon", tmp_path / "epoch_20.pth")
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1].startswith("OK"), out.stderr
    torch.save(state, tmp_path / "plain.pth")  # a plain state dict is accepted too
    assert check("deep3d_recon", tmp_path / "plain.pth").returncode == 0


@pytest.mark.parametrize("kind, entry, manifest_name", [
    ("stylegan2_discriminator", "d", "stylegan2_discriminator_1024.tsv"),
    ("sadtalker_audio2exp", "model", "sadtalker_audio2exp.tsv"),
])
def test_check_checkpoint_other_kinds(tmp_path, kind, entry, manifest_name):
    manifest = read_manifest(manifest_name)
    write_official(tmp_path / "file.pt", manifest, entry)
    res = check(kind, tmp_path / "file.pt")
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1].startswith("OK"), res.stderr
    if kind != "sadtalker_audio2exp":  # DataParallel "module." prefixes are accepted
        state = torch.load(tmp_path / "file.pt", weights_only=True)[entry]
        torch.save({entry: {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
        assert check(kind, tmp_path / "wrapped.pt").returncode == 0


class NotAllowed:
    """A class of this test module: weights_only loading must refuse to rebuild it."""

    def __init__(self, value=0):
        self.value = value


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def rosinality_training_file(path, g, d, args):
    """What rosinality's train.py saves: {g, d, g_ema, g_optim, d_optim, args (a Namespace), ada_aug_p}."""
    g_optim, d_optim = torch.optim.Adam(g.parameters(), lr=0.002), torch.optim.Adam(d.parameters(), lr=0.002)
    g(torch.randn(2, 32))[0].mean().backward()
    d(torch.randn(2, 3, 32, 32)).mean().backward()
    g_optim.step()
    d_optim.step()
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(), "g_optim": g_optim.state_dict(),
                "d_optim": d_optim.state_dict(), "args": args, "ada_aug_p": 0.0}, path)


def test_a_rosinality_training_checkpoint_loads_and_code_is_still_refused(tmp_path):
    from stylization.engine.checkpoint import load_file
    from stylization.errors import CheckpointError
    from stylization.loading import extract_state_dict, load_official

    args = argparse.Namespace(path="lmdb", arch="stylegan2", iter=800000, batch=16, size=32, r1=10.0, ckpt=None,
                              lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=False,
                              n_gpu=1, distributed=False, latent=32, n_mlp=2, start_iter=0)
    g, d = small_generator(), Discriminator(32, channel_cap=16)
    path = tmp_path / "000100.pt"
    rosinality_training_file(path, g, d, args)
    obj = load_file(path)
    assert isinstance(obj["args"], argparse.Namespace) and obj["args"] == args
    loaded = load_official("stylegan2_generator", path, module=Generator(32, style_dim=32, n_mlp=2, channel_cap=16))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), g.state_dict().values()))
    disc = extract_state_dict("stylegan2_discriminator", obj, str(path))
    assert disc.keys() == d.state_dict().keys()
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # allowed for that load only

    # anything else stays refused: another class (also inside the Namespace) or a callable's reduce
    marker = tmp_path / "ran"
    for name, bad in [("class.pt", {"g_ema": g.state_dict(), "args": NotAllowed(1)}),
                      ("nested.pt", {"g_ema": g.state_dict(), "args": argparse.Namespace(opt=NotAllowed(2))}),
                      ("system.pt", {"g_ema": g.state_dict(), "args": RunsACommand(marker)})]:
        torch.save(bad, tmp_path / name)
        with pytest.raises(CheckpointError, match="cannot be loaded safely"):
            load_official("stylegan2_generator", tmp_path / name, module=small_generator())
    assert not marker.exists()


def test_check_checkpoint_unknown_kind(tmp_path):
    res = check("stylegan3_generator", tmp_path / "x.pt")
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "unknown checkpoint kind" in res.stderr


def test_conditional_discriminator_depends_on_degree_and_style():
    from stylization.style_a.stylegan2 import ConditionalDiscriminator

    torch.manual_seed(0)
    d = ConditionalDiscriminator(32, num_styles=6, channel_cap=16)
    x = torch.randn(4, 3, 32, 32)
    degree, style = torch.full((4,), 0.5), torch.tensor([0, 1, 2, 3])
    logits = d(x, degree, style)
    assert logits.shape == (4, 1)
    assert not torch.allclose(d(x, torch.ones(4), style), logits)
    assert not torch.allclose(d(x, degree, torch.tensor([5, 5, 5, 5])), logits)
    logits.mean().backward()
    assert d.style_mapper.weight.grad is not None and d.label_mapper[0].weight.grad is not None

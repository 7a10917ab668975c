"""Style-A: refinement, the assembled generator, official loading, losses, data and training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, compose_train, read_manifest, train_as_documented

from stylization.errors import CheckpointError, ConfigError, DataError
from stylization.loading import load_style_a, lpips_vgg, vgg19_features
from stylization.metrics import mouth
from stylization.style_a import losses
from stylization.style_a.refinement import Refinement
from stylization.style_a.style_a import TRAIN_GROUPS, StyleAGenerator, styleheat_state
from stylization.style_a.vtoonify import VToonifyD

TINY = dict(in_size=32, out_size=128, style_dim=16, n_mlp=8, channel_multiplier=1, channel_cap=16, motion_size=32,
            motion_base_nc=8, motion_max_nc=16, motion_encoder_layers=3, motion_decoder_layers=3, descriptor_nc=16,
            refinement_width=8, align_corners=True)
VTOONIFY_ARGS = ("in_size", "out_size", "style_dim", "n_mlp", "channel_multiplier", "channel_cap")


def tiny_generator(**overrides) -> StyleAGenerator:
    torch.manual_seed(0)
    return StyleAGenerator(**{**TINY, **overrides}).eval()


def tiny_inputs(b=2, frames=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(b, 22, 32, 32, generator=g)
    identity, art = torch.randn(b, 12, 16, generator=g), torch.randn(b, 12, 16, generator=g)
    return content, identity, art, torch.randn(b * frames, 73, 27, generator=g)


# -- modules ---------------------------------------------------------------------------------

def test_refinement_gives_an_sft_pair_of_the_feature_shape():
    r = Refinement(in_channels=24, size=64, width=8, descriptor_nc=16)
    scale, shift = r(torch.randn(3, 24, 64, 64), torch.randn(3, 16))
    assert scale.shape == shift.shape == (3, 24, 64, 64)
    assert len(r.conv_body_down) == len(r.conv_body_up) == 4  # 64 -> 4 -> 64
    with pytest.raises(ValueError, match="64"):
        r(torch.randn(1, 24, 32, 32), torch.randn(1, 16))


def test_generator_outputs_and_ablations():
    content, identity, art, window = tiny_inputs()
    with torch.no_grad():
        out = tiny_generator()(content, identity, art, window)
        assert out["image"].shape == (2, 3, 128, 128) and out["flow"].shape == (2, 2, 32, 32)
        assert len(out["masks"]) == 1 and out["descriptor"].shape == (2, 16)  # in 32: one fusion stage
        no_skip = tiny_generator(in_size=64, motion_size=64, fuse_levels=1)
        content64 = torch.randn(2, 22, 64, 64)
        assert len(no_skip(content64, identity, art, window)["masks"]) == 1
        assert len(tiny_generator(in_size=64, motion_size=64)(content64, identity, art, window)["masks"]) == 2
        assert tiny_generator(refinement=False).refinement is None
        plain = tiny_generator(art_path=False)
        a = plain(content, identity, art, window)["image"]
        assert torch.equal(a, plain(content, identity, art + 1, window)["image"])  # art unused
        full = tiny_generator()
        assert not torch.allclose(full(content, identity, art, window)["image"],
                                  full(content, identity, art + 1, window)["image"])
        every = tiny_generator(art_layers=None)  # colours from the art code too: the identity code is unused
        assert every.art_layers == 12 and torch.equal(every.mix_codes(identity, art), art)
        assert torch.equal(full.mix_codes(identity, art)[:, 7:], identity[:, 7:])


def test_content_at_the_output_size_is_fused():
    """in_size == out_size (the CPU-sized model): the encoder's top feature meets the generator after
    its last upsampling (fusion_out[2]; fusion_skip[2] stays unused)."""
    g = tiny_generator(in_size=128, motion_size=32, refinement=False)
    assert g.top_fusion() == 2 and tiny_generator().top_fusion() is None  # VToonify's 4x layout has none
    _, identity, art, window = tiny_inputs()
    out = g(torch.randn(2, 22, 128, 128), identity, art, window)
    assert len(out["masks"]) == 3 and out["masks"][-1].shape[-1] == 128
    out["image"].square().mean().backward()
    assert g.fusion_out[2].conv.weight.grad.abs().sum() > 0
    assert g.fusion_skip[2].weight.grad is None


def trainable(module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def assert_trainable_parameters_get_gradients(g: StyleAGenerator, in_size: int) -> None:
    """Nothing looks trainable that the forward pass never reaches (DDP fails on such parameters)."""
    _, identity, art, window = tiny_inputs()
    g.zero_grad(set_to_none=True)
    g(torch.randn(2, 22, in_size, in_size), identity, art, window)["image"].square().mean().backward()
    idle = sorted(name for name, p in g.named_parameters() if p.requires_grad and p.grad is None)
    assert not idle, idle[:5]


def test_configure_trainable_follows_the_flags_and_freezes_what_never_runs():
    flags = dict.fromkeys(TRAIN_GROUPS, False)
    g = tiny_generator(in_size=64, motion_size=64)  # content fused at 32 and 64
    g.configure_trainable({**flags, "content": True})
    content = {f"{part}.{n}" for part in ("encoder", "fusion_out", "fusion_skip")
               for n, _ in getattr(g, part).named_parameters()}
    assert trainable(g) == content
    assert_trainable_parameters_get_gradients(g, 64)
    g.configure_trainable({**flags, "motion": True, "refinement": True})
    assert trainable(g) and all(n.startswith(("motion.", "refinement.")) for n in trainable(g))
    with pytest.raises(ValueError, match="missing"):
        g.configure_trainable({"content": True})

    # fuse_levels=1 ("w/o skip connections"): the 64 px fusion never runs, so it is frozen
    no_skip = tiny_generator(in_size=64, motion_size=64, fuse_levels=1)
    no_skip.configure_trainable({**flags, "content": True})
    assert all(p.requires_grad for p in no_skip.fusion_out[0].parameters())
    assert not any(p.requires_grad for m in (no_skip.fusion_out[1], no_skip.fusion_skip[1]) for p in m.parameters())
    assert_trainable_parameters_get_gradients(no_skip, 64)

    # art_path=False ("w/o art style"): the encoder's ModRes and the colour transforms above
    # DualStyleGAN.res_index are frozen even when their groups train
    plain = tiny_generator(art_path=False)
    plain.configure_trainable({**flags, "modres": True, "content": True, "backbone": True})
    dsg = plain.generator
    assert not any(p.requires_grad for p in plain.res.parameters())
    assert not any(p.requires_grad for j in range(dsg.res_index + 1, plain.n_latent) for p in dsg.res[j].parameters())
    # the backbone trains, but not what VToonify-D's path never runs (DualStyleGAN's own structure
    # ModRes, the StyleGAN2 mapping and its layers below 32 px)
    assert not any(p.requires_grad for j in range(dsg.res_index + 1) for p in dsg.res[j].parameters())
    assert not any(p.requires_grad for p in dsg.generator.style.parameters())
    assert not any(p.requires_grad for p in dsg.style.parameters())  # T_s drives only the encoder's ModRes
    assert_trainable_parameters_get_gradients(plain, 32)
    plain.configure_trainable({**flags, "modres": True, "content": True})
    assert_trainable_parameters_get_gradients(plain, 32)
    # the CPU recipe trains every group from scratch: everything trainable must still get a gradient
    everything = tiny_generator(in_size=64, motion_size=64)
    everything.configure_trainable(dict.fromkeys(TRAIN_GROUPS, True))
    assert_trainable_parameters_get_gradients(everything, 64)
    with_art = tiny_generator()
    with_art.configure_trainable({**flags, "modres": True})
    # the encoder's ModRes, less slot 0 (encoder block j is followed by res[j + 1])
    assert trainable(with_art) == {f"res.{n}" for n, _ in with_art.res.named_parameters() if not n.startswith("0.")}
    assert_trainable_parameters_get_gradients(with_art, 32)


def test_repeats_equal_repeated_inputs():
    content, identity, art, window = tiny_inputs(b=2, frames=3)
    g = tiny_generator()
    with torch.no_grad():
        once = g(content, identity, art, window, repeats=3)["image"]
        rep = lambda x: x.repeat_interleave(3, 0)  # noqa: E731
        each = g(rep(content), rep(identity), rep(art), window)["image"]
    torch.testing.assert_close(once, each, rtol=1e-4, atol=1e-4)  # batch composition changes float sums


@pytest.mark.parametrize("warp_content", [False, True])
def test_zero_flow_without_refinement_is_vtoonify(warp_content):
    """With the flow forced to zero (aligned corners) the motion path is the identity: the Style-A
    generator then renders exactly what VToonify-D with the same weights renders."""
    g = tiny_generator(refinement=False, warp_content=warp_content, in_size=64, motion_size=64)
    last = g.motion.warpping_net.flow_out[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    v = VToonifyD(**{**{k: TINY[k] for k in VTOONIFY_ARGS}, "in_size": 64}).eval()
    v.load_state_dict({k: t for k, t in g.state_dict().items() if not k.startswith("motion.")})
    _, identity, art, window = tiny_inputs()
    content = torch.randn(2, 22, 64, 64)
    with torch.no_grad():
        ours = g(content, identity, art, window)["image"]
        theirs = v(content, g.mix_codes(identity, art), 1.0)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


# -- official files --------------------------------------------------------------------------

def styleheat_calibrator_shapes(width=256, in_ch=512, levels=4, descriptor=256) -> dict[str, list[int]]:
    """StyleHEAT's CalibrationNet(out_size=64, input_channel=512, channel_multiplier=2, narrow=1),
    enumerated from its constructor (models/styleheat/calibration_net.py)."""
    w, s = width, {}
    s["conv_body_first.0.weight"], s["conv_body_first.1.bias"] = [w, in_ch, 1, 1], [w]
    for i in range(levels):
        p = f"conv_body_down.{i}."
        s.update({p + "conv1.0.weight": [w, w, 3, 3], p + "conv1.1.bias": [w], p + "conv2.0.kernel": [4, 4],
                  p + "conv2.1.weight": [w, w, 3, 3], p + "conv2.2.bias": [w], p + "skip.0.kernel": [4, 4],
                  p + "skip.1.weight": [w, w, 1, 1]})
    s["final_conv.0.weight"], s["final_conv.1.bias"] = [w, w, 3, 3], [w]
    for i in range(levels):
        p = f"conv_body_up.{i}."
        s.update({p + "conv1.0.weight": [w, w, 3, 3], p + "conv1.1.bias": [w], p + "conv2.weight": [w, w, 3, 3],
                  p + "conv2.activation.bias": [w], p + "skip.weight": [w, w, 1, 1]})
    s.update({"linear_3dmm.0.weight": [descriptor, descriptor], "linear_3dmm.0.bias": [descriptor],
              "linear_3dmm.2.weight": [descriptor, descriptor], "linear_3dmm.2.bias": [descriptor]})
    for i in range(levels):
        p = f"inject_3dmm.{i}."
        s.update({p + "conv1.weight": [w, w, 3, 3], p + "conv1.bias": [w], p + "conv2.weight": [w, w, 3, 3],
                  p + "conv2.bias": [w]})
        for n in ("norm1", "norm2"):
            s.update({p + f"{n}.mlp_shared.0.weight": [128, w], p + f"{n}.mlp_shared.0.bias": [128],
                      p + f"{n}.mlp_gamma.weight": [w, 128], p + f"{n}.mlp_gamma.bias": [w],
                      p + f"{n}.mlp_beta.weight": [w, 128], p + f"{n}.mlp_beta.bias": [w]})
        for head in ("condition_scale", "condition_shift"):
            s.update({f"{head}.{i}.0.weight": [w, w, 3, 3], f"{head}.{i}.0.bias": [w],
                      f"{head}.{i}.2.weight": [2 * w, w, 3, 3], f"{head}.{i}.2.bias": [2 * w]})
    return s


def write_styleheat(path):
    """A StyleHEAT_visual.pt-format file: video_warper (PIRender's nets, 'warping_net'), calibrator,
    and keys Style-A must ignore (HFGI generator, audio warper)."""
    g = torch.Generator().manual_seed(3)
    rnd = lambda shape: torch.randn(shape, generator=g) if shape else torch.tensor(0)  # noqa: E731
    state = {}
    for name, shape in read_manifest("pirender_facegenerator.tsv"):
        if name.startswith(("mapping_net.", "warpping_net.")):
            state["video_warper." + name.replace("warpping_net.", "warping_net.")] = rnd(shape)
    state.update({"calibrator." + k: rnd(v) for k, v in styleheat_calibrator_shapes().items()})
    state["generator.encoder.input_layer.0.weight"] = rnd([64, 3, 3, 3])
    state["audio_warper.audio_encoder.first.0.weight"] = rnd([256, 80, 7])
    torch.save({"net_G_ema": state}, path)
    return state


def test_styleheat_rename_map_covers_motion_and_refinement():
    with torch.device("meta"):
        g = StyleAGenerator()
    ours = {k: list(v.shape) for k, v in g.state_dict().items() if k.startswith(("motion.", "refinement."))}
    theirs = {"calibrator." + k: v for k, v in styleheat_calibrator_shapes().items()}
    for name, shape in read_manifest("pirender_facegenerator.tsv"):
        if name.startswith(("mapping_net.", "warpping_net.")):
            theirs["video_warper." + name.replace("warpping_net.", "warping_net.")] = shape
    renamed = styleheat_state({k: torch.empty(v, device="meta") for k, v in theirs.items()})
    assert {k: list(v.shape) for k, v in renamed.items()} == ours
    assert all(not k.startswith("calibrator.condition") for k in renamed)


def test_default_size_loads_official_files_and_renders(tmp_path):
    """The paper-size generator takes a VToonify-D g_ema and StyleHEAT's net_G_ema strictly, then
    renders a 256 frame to 1024."""
    manifest = read_manifest("vtoonify_d.tsv")
    g = torch.Generator().manual_seed(2)
    vtoonify = {n: torch.randn(s, generator=g) * 0.02 if s else torch.tensor(0) for n, s in manifest}
    torch.save({"g_ema": vtoonify}, tmp_path / "vtoonify_s_d.pt")
    styleheat = write_styleheat(tmp_path / "StyleHEAT_visual.pt")
    del vtoonify
    model = StyleAGenerator().eval()
    load_style_a(model, tmp_path / "vtoonify_s_d.pt", tmp_path / "StyleHEAT_visual.pt")
    loaded = torch.load(tmp_path / "vtoonify_s_d.pt", weights_only=True)["g_ema"]
    own = model.state_dict()
    assert torch.equal(own["fusion_out.0.conv.weight"], loaded["fusion_out.0.conv.weight"])
    assert torch.equal(own["refinement.sft_scale.2.weight"], styleheat["calibrator.condition_scale.3.2.weight"])
    assert torch.equal(own["motion.warpping_net.flow_out.2.weight"], styleheat["video_warper.warping_net.flow_out.2.weight"])
    del loaded
    with torch.no_grad():
        out = model(torch.randn(1, 22, 256, 256), torch.randn(1, 18, 512), torch.randn(1, 18, 512),
                    torch.randn(1, 73, 27), degree=0.5)
    assert out["image"].shape == (1, 3, 1024, 1024) and torch.isfinite(out["image"]).all()
    assert out["flow"].shape == (1, 2, 64, 64)

    # a wrong file fails in one line naming it
    torch.save({"g_ema": {"encoder.0.0.weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt.*missing"):
        load_style_a(model, vtoonify=tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not a StyleHEAT"):
        load_style_a(model, styleheat=tmp_path / "bad.pt")


def test_check_checkpoint_styleheat(tmp_path):
    from conftest import check_checkpoint

    write_styleheat(tmp_path / "StyleHEAT_visual.pt")
    done = check_checkpoint("styleheat", tmp_path / "StyleHEAT_visual.pt")
    assert done.returncode == 0, done.stderr


# -- losses ----------------------------------------------------------------------------------

def test_losses():
    torch.manual_seed(0)
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    b = torch.rand(2, 3, 32, 32) * 2 - 1
    assert losses.reconstruction_loss(a, a) == 0 and losses.reconstruction_loss(a, b) > 0

    vgg = losses.VGGPerceptual(vgg19_features(None))
    fake = a.clone().requires_grad_(True)
    assert vgg(a, a) == 0
    value = vgg(fake, b)
    value.backward()
    assert value > 0 and fake.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vgg.parameters())
    with pytest.raises(ConfigError, match="perceptual_weights"):
        vgg19_features("bogus")

    zero = torch.zeros(4, 1)
    assert torch.isclose(losses.d_logistic_loss(zero, zero), torch.tensor(2 * np.log(2), dtype=torch.float32))
    assert torch.isclose(losses.g_nonsaturating_loss(zero), torch.tensor(np.log(2), dtype=torch.float32))
    assert losses.g_nonsaturating_loss(torch.full((4, 1), 5.0)) < losses.g_nonsaturating_loss(zero)

    w = torch.randn(3 * 8 * 8)
    real = torch.randn(2, 3, 8, 8, requires_grad=True)
    penalty = losses.r1_penalty((real.flatten(1) @ w)[:, None], real)
    assert torch.isclose(penalty, w.pow(2).sum())  # a linear D has gradient w everywhere

    assert losses.mask_hinge_loss([torch.full((2, 1, 8, 8), 0.05)], degree=1.0) == 0
    assert torch.isclose(losses.mask_hinge_loss([torch.ones(2, 1, 8, 8)] * 2, degree=1.0), torch.tensor(1.8))
    assert losses.mask_hinge_loss([torch.ones(2, 1, 8, 8)], degree=0.0) == 0  # bound 1 at degree 0

    src = torch.rand(2, 3, 16, 16)
    zero = torch.zeros(2, 2, 8, 8)
    assert losses.warping_loss(src, zero, src, align_corners=True) < 1e-6  # a zero flow is the identity
    shifted = torch.roll(src, 1, dims=-1)
    one_left = torch.cat([torch.full((2, 1, 8, 8), -0.5), torch.zeros(2, 1, 8, 8)], 1)  # -1 px of 16 = -0.5 of 8
    assert losses.warping_loss(src, one_left, shifted, True) < losses.warping_loss(src, zero, shifted, True)

    lm = torch.zeros(2, 68, 2)
    lm[:, 48:68] = torch.tensor([[20.0, 40.0], [28.0, 44.0]]).repeat(10, 1)  # a 8×4 mouth at (24, 42)
    boxes = mouth.mouth_boxes(lm, 64)
    assert boxes[0].tolist() == [17, 35, 31, 49]
    real = torch.zeros(2, 3, 64, 64)
    outside, inside = real.clone(), real.clone()
    outside[..., :10, :10] = 1
    inside[..., 40:44, 22:26] = 1
    assert losses.mouth_loss(outside, real, lm) == 0 and losses.mouth_loss(inside, real, lm) > 0

    clip = torch.rand(2, 3, 3, 8, 8)
    assert losses.temporal_loss(clip + 0.3, clip) < 1e-12  # same changes, different frames
    assert losses.temporal_loss(clip.flip(1), clip) > 0
    with pytest.raises(ValueError):
        losses.temporal_loss(clip[:, :1], clip[:, :1])

    # an error every frame of a source shares (blur, colour) costs nothing; one that varies does
    renders = torch.rand(2, 4, 3, 8, 8)
    assert losses.motion_residual_loss(renders + 0.5 * torch.rand(2, 1, 3, 8, 8), renders) < 1e-12
    still = renders[:, :1].expand_as(renders)  # the same frame whatever the window
    pairs = (still - renders)[:, :, None] - (still - renders)[:, None]  # residual differences of every pair
    assert torch.isclose(losses.motion_residual_loss(still, renders), pairs.pow(2).mean() / 2)
    with pytest.raises(ValueError):
        losses.motion_residual_loss(renders[:, :1], renders[:, :1])


def test_mouth_motion_loss_is_the_motion_residual_inside_one_mouth_box():
    torch.manual_seed(0)
    b, n, size = 2, 4, 32
    real = torch.rand(b, n, 3, size, size) * 2 - 1
    lm = torch.zeros(b, n, 68, 2)
    lm[..., 48:68, 0] = torch.linspace(10.0, 20.0, 20)  # mouth 10 px wide at x 10-20, y 14-18:
    lm[..., 48:68, 1] = torch.linspace(14.0, 18.0, 20)  # box x 6-24, y 7-25 (1.5 times, +1 px)
    lm[:, 1:, 48:68, 1] += 1.0  # later frames' boxes one pixel lower: the mean box, rounded, is y 8-26
    box = (slice(None), slice(None), slice(None), slice(8, 26), slice(6, 24))
    # a model whose error is the same in every frame of a source, and any error outside the box: 0
    shared = real + 0.3 * torch.rand(b, 1, 3, size, size)
    outside = shared.clone()
    outside[..., :4, :] += torch.rand(b, n, 3, 4, size)
    assert losses.mouth_motion_loss(outside, real, lm) < 1e-12
    # a still mouth: the target's own change in the box, squared (independent arithmetic)
    still = real[:, :1].expand_as(real)
    crop = real[box]
    assert torch.isclose(losses.mouth_motion_loss(still, real, lm), (crop - crop.mean(1, keepdim=True)).pow(2).mean())
    # inside the box it is motion_residual_loss on the crops
    fake = (real + 0.2 * torch.randn_like(real)).requires_grad_(True)
    value = losses.mouth_motion_loss(fake, real, lm)
    assert torch.isclose(value, losses.motion_residual_loss(fake[box], real[box]))
    value.backward()
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[8:26, 6:24] = True
    assert (fake.grad[..., ~inside] == 0).all() and fake.grad[..., inside].abs().sum() > 0
    with pytest.raises(ValueError):
        losses.mouth_motion_loss(real[:, :1], real[:, :1], lm[:, :1])


def test_style_a_loss_weights_its_named_terms():
    torch.manual_seed(0)
    b, k, f, size = 2, 2, 2, 16
    target = torch.rand(b, k, f, 3, size, size) * 2 - 1
    fake = target.flatten(0, 2) + 0.1 * torch.randn(b * k * f, 3, size, size)
    out = {"image": fake, "flow": torch.zeros(b * k * f, 2, 8, 8), "masks": [torch.full((b * k * f, 1, 4, 4), 0.5)]}
    lm = torch.zeros(b, k, f, 68, 2)
    lm[..., 48:68, :] = torch.tensor([[4.0, 8.0], [12.0, 12.0]]).repeat(10, 1)
    batch = {"source": torch.rand(b, 3, size, size), "target_real": torch.rand(b, k, f, 3, size, size),
             "target_landmarks": lm}
    weights = {"mse": 1.0, "perceptual": 0.0, "lpips": 0.0, "adversarial": 0.5, "mask": 2.0, "temporal": 3.0,
               "warp": 0.25, "mouth": 4.0, "motion": 5.0, "mouth_motion": 6.0, "sync": 0.0}
    loss = losses.StyleALoss(weights=weights, degree=1.0, align_corners=True)
    total, terms = loss(out, target, batch, g_adv=torch.tensor(0.7))
    assert list(terms) == ["g_adv", "mse", "mask", "warp", "mouth", "motion", "mouth_motion", "temporal"]
    assert torch.isclose(terms["mouth_motion"], losses.mouth_motion_loss(fake.reshape(b, k * f, 3, size, size),
                                                                         target.flatten(1, 2), lm.flatten(1, 2)))
    of = {"g_adv": "adversarial"}
    assert torch.isclose(total, sum(weights[of.get(n, n)] * v for n, v in terms.items()))
    assert torch.isclose(terms["mse"], losses.reconstruction_loss(fake, target.flatten(0, 2)))
    _, without = losses.StyleALoss(weights={**weights, "warp": 0.0, "temporal": 0.0, "mouth_motion": 0.0}, degree=1.0,
                                   align_corners=True)(out, target, batch)
    assert list(without) == ["mse", "mask", "mouth", "motion"]  # a zero weight is not computed (mse, mask: always)
    with pytest.raises(ConfigError, match="stage.loss: unknown weights \\['l1'\\]"):
        losses.StyleALoss(weights={**weights, "l1": 1.0}, degree=1.0, align_corners=True)
    with pytest.raises(ValueError, match="perceptual"):
        losses.StyleALoss(weights={**weights, "perceptual": 0.1}, degree=1.0, align_corners=True)
    with pytest.raises(ValueError, match="sync"):
        losses.StyleALoss(weights={**weights, "sync": 0.1}, degree=1.0, align_corners=True)


def test_lpips_is_optional():
    try:
        import lpips  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install lpips"):
            lpips_vgg()
    else:
        loss = losses.LPIPSLoss(lpips_vgg())
        x = torch.rand(1, 3, 64, 64) * 2 - 1
        assert loss(x, x) < 1e-6


def test_ssim_psnr_match_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from stylization.metrics.image import psnr, ssim

    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 48)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    for i in range(2):
        want = skimage_metrics.structural_similarity(x[i].numpy(), y[i].numpy(), gaussian_weights=True, sigma=1.5,
                                                     use_sample_covariance=False, data_range=1, channel_axis=0)
        assert abs(float(ssim(x, y)[i]) - want) < 1e-5
        assert abs(float(psnr(x, y)[i]) - skimage_metrics.peak_signal_noise_ratio(x[i].numpy(), y[i].numpy(),
                                                                                   data_range=1)) < 1e-3
    assert torch.allclose(ssim(x, x), torch.ones(2))


# -- data ------------------------------------------------------------------------------------

def test_landmark_parsing_draws_the_face_parts(synthetic_corpus):
    from stylization.data.corpus import Corpus
    from stylization.data.parsing import N_CLASSES, landmark_labels, landmark_parsing

    corpus = Corpus(synthetic_corpus)
    rec = corpus.clips("train")[0]
    landmarks = corpus.load_landmarks(rec)
    jaw = np.array([np.ptp(f[48:68, 1]) for f in landmarks])
    labels = landmark_labels(landmarks[int(jaw.argmax())], 64)
    assert {1, 2, 3, 4, 5, 10, 12, 13} <= set(np.unique(labels).tolist())
    parsing = landmark_parsing(landmarks[0], 128, scale=2.0)
    assert parsing.shape == (N_CLASSES, 128, 128) and set(np.unique(parsing).tolist()) == {0.0, 16.0}
    assert (parsing.sum(0) == 16).all()  # one class per pixel


def pair_dataset(root, split="train", inputs=None, **overrides):
    """A RenderPairDataset at the tiny test sizes (content and code 32 px, output 128)."""
    from stylization.data.render_inputs import RenderInputs
    from stylization.data.render_pairs import RenderPairDataset

    kwargs = dict(styles=None, out_size=128, pairs_per_item=2, frames_per_item=2, items_per_clip=2, targets="corpus",
                  deterministic=False, seed=0, speakers=None, source_frame="random", skip_damaged=False)
    inputs = inputs or RenderInputs(content_size=32, code_size=32, identity_alignment="crop", parsing="landmarks")
    return RenderPairDataset(root, split, inputs=inputs, **{**kwargs, **overrides})


def test_render_pair_dataset(synthetic_corpus):
    from stylization.data.render_inputs import RenderInputs

    ds = pair_dataset(synthetic_corpus)
    item = ds[3]
    assert item["source"].shape == (3, 32, 32) and item["source_parsing"].shape == (19, 32, 32)
    assert item["semantic"].shape == (2, 2, 73, 27) and item["target"].shape == (2, 2, 3, 128, 128)
    assert item["styled_source"].shape == (3, 128, 128) and item["art"].shape == (3, 32, 32)
    assert item["source_semantic"].shape == (73, 27)
    assert item["style"] in ("cel", "pixel_art") and -1 <= item["target"].min() <= item["target"].max() <= 1
    again = ds[3]
    assert torch.equal(item["target"], again["target"]) and item["source_frame"] == again["source_frame"]
    ds.set_epoch(1)
    assert any(ds[3]["source_frame"] != item["source_frame"] or ds[i]["style"] != ds[3]["style"] for i in range(4))

    test = pair_dataset(synthetic_corpus, "test", RenderInputs(32, 32, "crop", "none"), pairs_per_item=3,
                        frames_per_item=1, items_per_clip=1, deterministic=True, targets="teacher")
    item = test[1]
    assert item["source_frame"] == 0 and (item["target_frames"] > 0).all()
    assert item["target_real"].shape == (3, 1, 3, 32, 32) and "source_parsing" not in item
    assert [test[i]["style"] for i in range(2)] == ["cel", "pixel_art"]


@pytest.mark.parametrize("alignment", ["crop", "ffhq"])
def test_the_dataset_uses_the_input_builder_inference_uses(synthetic_corpus, alignment):
    """Training items are the shared builder's tensors for the same frame and picture: training and
    inference (Pipeline.run calls the same RenderInputs) cannot drift."""
    from stylization.data.render_inputs import RenderInputs
    from stylization.data.render_pairs import read_picture
    from stylization.data.video import read_video

    inputs = RenderInputs(content_size=48, code_size=40, identity_alignment=alignment, parsing="landmarks")
    ds = pair_dataset(synthetic_corpus, "test", inputs, deterministic=True)
    for index in (0, 3):
        item = ds[index]
        rec = ds.clips[ds.slots[index][0]]
        video = read_video(ds.corpus.path(rec, "video"), fps=rec.fps)
        landmarks = np.load(ds.corpus.path(rec, "landmarks"))
        built = inputs.identity(video[item["source_frame"]], landmarks[item["source_frame"]])
        assert set(built) == {"source", "source_parsing", "identity_face", "source_keypoints"}
        for key, value in built.items():
            assert torch.equal(item[key], value), key
        assert item["source"].shape == (3, 48, 48) and item["identity_face"].shape == (3, 40, 40)
        style = ds.styles[index % len(ds.styles)]
        picture = read_picture(ds.art[style][index // len(ds.styles) % len(ds.art[style])])
        assert torch.equal(item["art"], inputs.art(picture))
        frames = item["target_frames"][:, None] + torch.arange(2)
        assert torch.equal(item["target_real"], inputs.frames(video[frames.numpy()]))
    with pytest.raises(ConfigError, match="model.identity_alignment"):
        RenderInputs(48, 40, "aligned", "landmarks")
    with pytest.raises(ConfigError, match="parsing"):
        RenderInputs(48, 40, "crop", "bisenet")


def test_damaged_clips_stop_the_dataset_or_are_skipped(synthetic_corpus, tmp_path, caplog):
    """data.skip_damaged: a clip with a mis-shaped landmarks file stops the dataset, naming it, or is
    left out and logged."""
    import os
    import shutil

    root = tmp_path / "corpus"
    shutil.copytree(synthetic_corpus, root, copy_function=os.symlink)  # files linked, not copied
    ds = pair_dataset(root, "test")
    victim = ds.clips[0]
    path = ds.corpus.path(victim, "landmarks")
    os.remove(path)
    np.save(path, np.zeros((3, 68, 2), np.float32))
    with pytest.raises(DataError, match=f"{victim.id}: landmarks.npy has shape.*data.skip_damaged"):
        pair_dataset(root, "test")
    with caplog.at_level("WARNING"):
        kept = pair_dataset(root, "test", skip_damaged=True)
    assert [r.id for r in kept.clips] == [r.id for r in ds.clips[1:]]
    assert f"skipping 1 damaged clips: {victim.id}" in caplog.text


def test_source_frame_choices(synthetic_corpus):
    from stylization.data.render_pairs import closed_mouth_frame

    landmarks = np.zeros((4, 68, 2), np.float32)
    landmarks[:, 65:68, 1] = [[5.0], [1.0], [3.0], [4.0]]  # the lower inner lip, below the upper one at 0
    assert closed_mouth_frame(landmarks) == 1
    kwargs = dict(pairs_per_item=2, frames_per_item=1, items_per_clip=2)
    first = pair_dataset(synthetic_corpus, source_frame="first", **kwargs)
    closed = pair_dataset(synthetic_corpus, source_frame="closed_mouth", **kwargs)
    assert {first[i]["source_frame"] for i in range(4)} == {0}
    for i in range(4):
        rec = closed.clips[closed.slots[i][0]]
        expected = closed_mouth_frame(np.load(closed.corpus.path(rec, "landmarks"))[:rec.n_frames])
        assert closed[i]["source_frame"] == expected
    with pytest.raises(ConfigError, match="stage.source_frame"):
        pair_dataset(synthetic_corpus, source_frame="middle", **kwargs)


def test_mouth_weighted_target_runs(synthetic_corpus):
    from stylization.data.render_pairs import inner_lip_distance, mouth_weighted_starts

    # runs of one frame, source frame 0 (gap 0): weights |gap - 0| + their mean (3.75) = [3.75, 3.75, 8.75, 13.75]
    gap = np.array([0.0, 0.0, 5.0, 10.0], np.float32)
    draws = mouth_weighted_starts(gap, 0, 1, 40000, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / 40000, np.array([3.75, 3.75, 8.75, 13.75]) / 30,
                               atol=0.01)
    # in the dataset: the item's runs are those draws, after the source frame's (the closed mouth)
    kwargs = dict(pairs_per_item=4, frames_per_item=2, items_per_clip=1, source_frame="closed_mouth")
    ds = pair_dataset(synthetic_corpus, target_sampling="mouth", **kwargs)
    for i in range(3):
        rec = ds.clips[ds.slots[i][0]]
        gap = inner_lip_distance(np.load(ds.corpus.path(rec, "landmarks"))[:rec.n_frames])
        rng = np.random.default_rng([0, 0, i])
        rng.integers(rec.n_frames)  # the random source frame the closed-mouth choice replaces
        item = ds[i]
        assert item["source_frame"] == int(np.argmin(gap))
        assert item["target_frames"].tolist() == mouth_weighted_starts(gap, int(np.argmin(gap)), 2, 4, rng)
    with pytest.raises(ConfigError, match="stage.target_sampling"):
        pair_dataset(synthetic_corpus, target_sampling="loud", **kwargs)


# -- training --------------------------------------------------------------------------------

TINY_OVERRIDES = ["model=style_a_small", "model.generator.in_size=32", "model.generator.motion_size=32",
                  "model.generator.channel_cap=16", "model.generator.style_dim=16", "model.generator.refinement_width=8",
                  "model.generator.motion_base_nc=8", "model.generator.motion_max_nc=16",
                  "model.generator.descriptor_nc=16", "model.psp.input_size=32",
                  "model.psp.encoder_blocks=[[16,16,1],[16,16,1],[16,16,1],[16,16,1]]", "model.discriminator.channel_cap=16",
                  "stage.batch_size=1", "stage.pairs_per_item=2", "stage.frames_per_item=2"]


def style_a_overrides(root, run_dir, steps, extra=()):
    trainer = {"max_steps": steps, "num_workers": 0, "log_every_steps": 1, "val_every_steps": steps,
               "val_batches": 1, "image_every_steps": steps, "checkpoint_every_steps": steps, "device": "cpu",
               "ema_decay": 0.5}
    return (["stage=style_a", f"data.root={root}", f"trainer.run_dir={run_dir}", "stage.lr=2e-3", *TINY_OVERRIDES]
            + [f"trainer.{k}={v}" for k, v in trainer.items()] + list(extra))


def test_stage_freezes_the_fusions_the_generator_never_runs(synthetic_corpus, tmp_path):
    """in_size == out_size: the fusion at the output size trains, its RGB skip (never run) is frozen."""
    from stylization.style_a.stage import StyleAStage

    cfg = compose_train(style_a_overrides(synthetic_corpus, tmp_path / "run", 1, [
        "model.generator.in_size=128", "model.generator.motion_size=32"]))
    generator = StyleAStage(cfg).build_modules()["generator"]
    assert generator.top_fusion() == 2
    assert all(p.requires_grad for p in generator.fusion_out[2].parameters())
    assert not any(p.requires_grad for p in generator.fusion_skip[2].parameters())


def train_log(run_dir) -> list[dict[str, float]]:
    """The per-step training scalars of train.log ("... step N train k=v k=v")."""
    rows = []
    for line in (run_dir / "train.log").read_text().splitlines():
        if " train " in line and " step " in line:
            rows.append({k: float(v) for k, v in (kv.split("=") for kv in line.split(" train ", 1)[1].split())})
    return rows


def test_training_loss_falls_and_eval_render_reports(synthetic_corpus, tmp_path):
    from stylization.engine.run import run_training as train

    run_dir = tmp_path / "run"
    steps = 24
    # the CPU recipe trains without a discriminator; the paper's adversarial term is tested here
    cfg = compose_train(style_a_overrides(synthetic_corpus, run_dir, steps, ["stage.loss.adversarial=0.01"]))
    assert train(cfg) == steps
    log = train_log(run_dir)
    mse = [row["mse"] for row in log]
    assert len(mse) == steps and np.mean(mse[-6:]) < 0.7 * np.mean(mse[:6]), mse
    assert {"d_loss", "g_adv", "temporal", "mask", "r1"} <= set(log[0])

    done = subprocess.run([sys.executable, "scripts/eval_render.py", f"run={run_dir}", f"data.root={synthetic_corpus}",
                           "split=test", "pairs_per_item=2", "device=cpu"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"ssim", "psnr", "l1", "init_ssim", "init_psnr", "still_ssim", "still_psnr", "styled_source_ssim"} <= set(result)
    assert result["frames"] == 2 * result["items"] > 0
    assert (run_dir / "eval_render_test.png").is_file()
    assert result["mouth_grid"] == str(run_dir / "eval_render_test_mouth.png") and Path(result["mouth_grid"]).is_file()
    assert -1 <= result["mouth_motion_corr"] <= 1 and result["mouth_motion_gain"] >= 0


def test_sync_audio_windows_are_the_evaluations(synthetic_corpus):
    """WithSyncAudio: run k's in-sync window is the MFCC window SyncNet's evaluation takes for a
    5-frame window starting at that frame, offset o is the window o frames later; offsets past
    either end of the clip read silence."""
    from stylization.data.corpus import Corpus
    from stylization.style_a.stage import WithSyncAudio
    from stylization.syncnet.evaluate import audio_windows, window_count

    m = 4
    data = WithSyncAudio(pair_dataset(synthetic_corpus, frames_per_item=5, pairs_per_item=3), m)
    for index in (0, 5):
        item = data[index]
        rec = data.base.clips[data.base.slots[index][0]]
        wav = Corpus(synthetic_corpus).load_audio(rec)
        reference = audio_windows(wav, window_count(rec.n_frames, len(wav)))  # window i: frames i..i+4
        assert item["sync_audio"].shape == (3, 2 * m + 1, 1, 13, 20) and item["sync_target"].tolist() == [m] * 3
        for k, start in enumerate(item["target_frames"].tolist()):
            for o in range(-m, m + 1):
                if 0 <= start + o < len(reference):
                    torch.testing.assert_close(item["sync_audio"][k, m + o], reference[start + o], rtol=1e-5, atol=1e-4)
        ceps = data.clip_mfcc(rec)
        assert ceps.shape[1] >= 4 * (rec.n_frames + 2 * m)  # every offset of every run fits
        assert np.allclose(ceps[:, :4 * m - 2], ceps[:, 0:1])  # the lead-in is silence (one repeated vector)


def test_lip_sync_expert_trains_style_a(synthetic_corpus, tmp_path):
    """stage.loss.sync > 0: a frozen SyncNet (here a random-weight syncnet_v2.model) scores each run of
    5 rendered frames against its sound; its term is logged; without an expert, or with runs of
    another length, the stage stops naming the key."""
    from stylization.engine.run import run_training as train
    from stylization.style_a.stage import StyleAStage
    from stylization.syncnet.model import SyncNet

    torch.manual_seed(0)
    torch.save(SyncNet(1024).state_dict(), tmp_path / "syncnet_v2.model")
    run_dir = tmp_path / "run"
    sync = ["stage.loss.sync=0.1", f"stage.sync_expert={tmp_path / 'syncnet_v2.model'}", "stage.frames_per_item=5",
            "stage.pairs_per_item=1", "stage.sync_max_offset=2"]
    assert train(compose_train(style_a_overrides(synthetic_corpus, run_dir, 1, sync))) == 1
    log = train_log(run_dir)
    assert len(log) == 1 and all(np.isfinite(row["sync"]) and row["sync"] > 0 for row in log)
    with pytest.raises(ConfigError, match="stage.sync_expert"):
        StyleAStage(compose_train(style_a_overrides(synthetic_corpus, tmp_path / "r2", 1, ["stage.loss.sync=0.1"])))
    with pytest.raises(ConfigError, match="stage.frames_per_item=5"):
        StyleAStage(compose_train(style_a_overrides(synthetic_corpus, tmp_path / "r3", 1, sync[:2])))


def test_mouth_changes_measure_what_moves_over_the_frames():
    real = torch.rand(1, 3, 32, 32).repeat(3, 1, 1, 1)
    real[1, :, 20:22, 12:20] = 0.0  # the mouth opens in frame 1 and wider in frame 2
    real[2, :, 19:23, 12:20] = 0.0
    boxes = [(10, 16, 22, 26), (10, 17, 22, 27), (10, 18, 22, 28)]  # their mean: (10, 17, 22, 27)
    still = real[:1].repeat(3, 1, 1, 1)
    model_change, target_change = mouth.mouth_changes(still, real, boxes, range(3))
    assert model_change.shape == target_change.shape == (3, 3, 10, 12)
    assert model_change.abs().max() < 1e-6 and target_change.abs().max() > 0.1
    same, target_change = mouth.mouth_changes(real, real, boxes, range(3))
    assert torch.equal(same, target_change)


def test_mouth_motion_scores_a_still_and_a_perfect_model():
    """Summed over items, a model whose mouth never moves scores corr 0, gain 0; one that renders
    the targets scores 1, 1; one that moves half as much, in step, scores 1, 0.5."""
    torch.manual_seed(0)
    real = torch.rand(6, 3, 32, 32)
    boxes = mouth.mouth_boxes(torch.rand(6, 68, 2) * 20 + 6, 32).tolist()
    items = [range(0, 3), range(3, 6)]

    def scores(model):
        sums = [mouth.motion_sums(*mouth.mouth_changes(model, real, boxes, frames)) for frames in items]
        return mouth.motion_scores(*(sum(column) for column in zip(*sums)))

    still = torch.cat([real[i.start:i.start + 1].expand(3, -1, -1, -1) for i in items])
    corr, gain = scores(still)
    assert abs(corr) < 1e-6 and gain < 1e-6  # float rounding of identical frames leaves ~1e-8
    corr, gain = scores(real)
    assert abs(corr - 1) < 1e-6 and abs(gain - 1) < 1e-6
    half = torch.cat([(real[i.start:i.stop] + real[i.start:i.stop].mean(0, keepdim=True)) / 2 for i in items])
    corr, gain = scores(half)
    assert abs(corr - 1) < 1e-5 and abs(gain - 0.5) < 1e-5
    psnr = mouth.box_psnr(real, real.clamp(0.1, 0.9), boxes)
    assert psnr.shape == (6,) and torch.isfinite(psnr).all()


def test_motion_phase_freezes_the_renderer(synthetic_corpus, tmp_path):
    """From stage.motion_phase_from on, only motion, refinement and content learn; resuming keeps the phase."""
    from stylization.engine.run import run_training as train

    run_dir = tmp_path / "run"
    extra = ["stage.motion_phase_from=2", "trainer.checkpoint_every_steps=2", "trainer.keep_checkpoints=0"]
    assert train(compose_train(style_a_overrides(synthetic_corpus, run_dir, 3, extra))) == 3
    assert train(compose_train(style_a_overrides(synthetic_corpus, run_dir, 4, extra))) == 4  # resumed at 3
    load = lambda step: torch.load(run_dir / "checkpoints" / f"step_{step:09d}.pt", weights_only=False)  # noqa: E731
    before, after = load(2), load(4)
    first = load(2)["optimizers"]["generator"]["param_groups"]
    assert [g["name"] for g in first] == ["renderer", "motion"] and first[0]["lr"] == 0.0 < first[1]["lr"]
    for name in ("generator", "psp"):
        old, new = before["modules"][name], after["modules"][name]
        changed = {k for k in old if not torch.equal(old[k], new[k])}
        if name == "psp":
            assert not changed
        else:
            assert changed and all(k.startswith(("motion.", "refinement.", "keypoint_sft.", "encoder.", "fusion_"))
                                   for k in changed), \
                sorted(changed)[:5]
            assert any(k.startswith("motion.") for k in changed)


def test_teacher_targets(synthetic_corpus, tmp_path):
    """stage.targets=teacher renders the ground truth with a frozen VToonify-D from its official file."""
    from stylization.engine.run import run_training as train

    teacher = VToonifyD(in_size=32, out_size=128, style_dim=16, channel_multiplier=1, channel_cap=16)
    torch.save({"g_ema": teacher.state_dict()}, tmp_path / "vtoonify_s_d.pt")
    cfg = compose_train(style_a_overrides(synthetic_corpus, tmp_path / "run", 2, [
        "stage.targets=teacher", f"stage.checkpoints.vtoonify={tmp_path / 'vtoonify_s_d.pt'}"]))
    assert train(cfg) == 2
    state = torch.load(tmp_path / "run" / "checkpoints" / "step_000000002.pt", weights_only=False)
    assert "teacher" in state["modules"]
    # the student started from the teacher's weights (every part but motion and refinement)
    from stylization.style_a.stage import StyleAStage

    modules = StyleAStage(cfg).build_modules()
    student, taught = modules["generator"].state_dict(), teacher.state_dict()
    assert set(student) - set(taught) and all(k.startswith(("motion.", "refinement.", "keypoint_sft."))
                                              for k in set(student) - set(taught))
    for key, value in taught.items():
        assert torch.equal(student[key], value), key
        assert torch.equal(modules["teacher"].state_dict()[key], value), key
    with pytest.raises(ConfigError, match="checkpoints.vtoonify"):
        StyleAStage(compose_train(style_a_overrides(synthetic_corpus, tmp_path / "r2", 1, ["stage.targets=teacher"])))


def test_documented_cpu_command_trains_with_its_recipe(synthetic_corpus, tmp_path):
    """docs/results.md's short command, run as a user would (plus 2 steps), trains with the CPU recipe
    that model=style_a_small brings (configs/experiment/style_a_cpu.yaml); config.yaml says so, and
    the stage keys live in the stage, not the model."""
    expected = {"stage.lr": 1e-3, "trainer.ema_decay": 0.995, "trainer.log_every_steps": 25,
                "trainer.val_every_steps": 200, "trainer.val_batches": 10, "trainer.image_every_steps": 200,
                "trainer.checkpoint_every_steps": 200, "trainer.max_minutes": 15, "stage.motion_phase_from": None,
                "trainer.ema_rampup": 0.05, "model.generator.keypoints": True,
                "stage.source_frame": "closed_mouth", "stage.loss.perceptual": 0.0, "stage.loss.motion": 10.0,
                "stage.train.backbone": True, "model.generator.out_size": 128}
    cfg = train_as_documented(["stage=style_a", "model=style_a_small", "trainer.max_minutes=15"], synthetic_corpus,
                              tmp_path / "run", expected, validate=False)
    assert not {"train", "loss", "motion_phase_from", "source_frame"} & set(cfg.model)


@pytest.mark.parametrize("override, key", [
    ("model.generator.num_res_layers=7", "model.generator.num_res_layers"),
    ("model.identity_alignment=aligned", "model.identity_alignment"),
    ("model.parsing=segformer", "model.parsing"),
    ("stage.source_frame=middle", "stage.source_frame"),
    ("stage.targets=oracle", "stage.targets"),
    ("+stage.train.decoder=true", "stage.train"),
    ("stage.motion_phase_groups=[motion,psp]", "stage.motion_phase_groups"),
    ("+stage.loss.l1=1.0", "stage.loss"),
    ("model.parsing=bisenet", "stage.checkpoints.bisenet"),
])
def test_bad_options_fail_before_any_data_is_read(tmp_path, override, key):
    """The stage checks its options first: a wrong one fails naming its key, with no corpus at all."""
    from stylization.style_a.stage import StyleAStage

    cfg = compose_train(style_a_overrides(tmp_path / "no_corpus", tmp_path / "run", 1, [override]))
    with pytest.raises(ConfigError, match=key.replace(".", "\\.")):
        StyleAStage(cfg)

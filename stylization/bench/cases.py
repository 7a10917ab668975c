"""The side-by-side cases: the same computation built from the official code and from ours.

Each case builds one side (``"official"`` or ``"ours"``) in the calling process and returns a
:class:`Built`: the module, a function that renders once (returns the output tensor) and the
number of images that one call renders. The official side is built first, from a fixed seed;
its state dict is what ours loads, strictly, through the same functions as the released files
(:func:`stylization.loading.load_strict`; the Style-A frame adds the PIRender-to-Style-A rename
of its motion generator), so equal outputs (``max_abs_diff``) mean equal computations.

Cases (``size`` is the output side, 1024 in the paper):

* ``stylegan2``: z [1, 512] -> image, stored noise (rosinality's ``randomize_noise=False``);
* ``dualstylegan``: z and an extrinsic W+ code, weights 0.75 × 7 + 1 × 11 (the official style
  transfer's), stored noise;
* ``vtoonify_d``: the full frame, a 22-channel [1, 22, size/4, size/4] content input -> image;
* ``style_a_frame``: one identity driven by ``frames`` 73 × 27 coefficient windows, one frame at a
  time: VToonify-D's encoder and generator with the PIRenderer motion generator's flow warping the
  64² feature, as the Style²Talker release's ``Audio_Driven_VToonify`` does. The official side
  (its modules, put together in that release's order) runs the whole network for every frame, as
  that release does; ours encodes the identity once per video (:meth:`StyleAGenerator.prepare`)
  and runs the per-frame half (:meth:`StyleAGenerator.drive`) for each frame. Both without the
  refinement network (StyleHEAT's calibrator, not in these repositories) and without warping the
  RGB skip (the release does not);
* ``pirender``: PIRenderer (256²) on a source image and one window.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import PARSING_CLASSES, SEMANTIC_DIM

CASES = ("stylegan2", "dualstylegan", "vtoonify_d", "style_a_frame", "pirender")
WINDOW = 27  # frames per coefficient window (PIRenderer's semantic radius 13)
DSG_WEIGHTS = [0.75] * 7 + [1.0] * 11


@dataclasses.dataclass(frozen=True)
class Setup:
    """size: output side of the StyleGAN-family cases (VToonify-D's input is size / 4); frames:
    frames per timed call of ``style_a_frame``; pirender_size: PIRenderer's (and the motion
    generator's) image side; degree: VToonify's style degree d_s; seed: weights and inputs."""

    size: int = 1024
    frames: int = 4
    pirender_size: int = 256
    degree: float = 0.5
    seed: int = 0


@dataclasses.dataclass
class Built:
    module: nn.Module
    run: Callable[[], torch.Tensor]
    images: int  # images one call renders


def inputs(case: str, setup: Setup) -> dict[str, torch.Tensor]:
    """The case's inputs, drawn from ``setup.seed`` (identical in every process)."""
    g = torch.Generator().manual_seed(setup.seed + 1)
    n_latent = 2 * (setup.size.bit_length() - 1) - 2
    if case in ("stylegan2", "dualstylegan"):
        return {"z": torch.randn(1, 512, generator=g), "ex": torch.randn(1, n_latent, 512, generator=g)}
    content = torch.cat([torch.rand(1, 3, setup.size // 4, setup.size // 4, generator=g) * 2 - 1,
                         torch.randn(1, PARSING_CLASSES, setup.size // 4, setup.size // 4, generator=g) / 16], 1)
    style = torch.randn(1, n_latent, 512, generator=g)
    windows = torch.randn(setup.frames, SEMANTIC_DIM, WINDOW, generator=g) * 0.5
    side = setup.pirender_size
    source = content[:, :3] if content.shape[-1] == side else \
        F.interpolate(content[:, :3], size=(side, side), mode="bilinear", align_corners=False)
    if case == "pirender":
        return {"source": torch.rand(1, 3, side, side, generator=g) * 2 - 1, "window": windows[:1]}
    return {"content": content, "style": style, "windows": windows, "source": source}


def build_official(case: str, setup: Setup, official_src: str) -> Built:
    """The official side, weights drawn from ``setup.seed``."""
    from stylization.bench.official import pirender_modules, vtoonify_modules

    x = inputs(case, setup)
    torch.manual_seed(setup.seed)
    if case == "pirender":
        pr = pirender_modules(official_src)
        net = pr["face_model"].FaceGenerator(**pr["params"]).eval()
        return Built(net, lambda: net(x["source"], x["window"])["fake_image"], 1)
    vt = vtoonify_modules(official_src)
    if case == "stylegan2":
        net = vt["stylegan"].Generator(setup.size, 512, 8, 2).eval()
        return Built(net, lambda: net([x["z"]], randomize_noise=False)[0], 1)
    if case == "dualstylegan":
        net = vt["dualstylegan"].DualStyleGAN(setup.size, 512, 8, 2, res_index=6).eval()
        return Built(net, lambda: net([x["z"]], x["ex"], randomize_noise=False, use_res=True,
                                      interp_weights=DSG_WEIGHTS)[0], 1)
    net = vt["vtoonify"].VToonify(setup.size // 4, setup.size, backbone="dualstylegan").eval()
    if case == "vtoonify_d":
        return Built(net, lambda: net(x["content"], x["style"], d_s=setup.degree), 1)
    if case != "style_a_frame":
        raise ValueError(f"unknown case {case!r}; known: {CASES}")
    pr = pirender_modules(official_src)
    motion = pr["face_model"].FaceGenerator(**pr["params"]).eval()
    net = nn.ModuleDict({"vtoonify": net, "motion": motion})
    frame = lambda w: official_style_a_frame(net["vtoonify"], motion, pr["flow_util"], x["content"],  # noqa: E731
                                             x["style"], setup.degree, x["source"], w)
    return Built(net, lambda: torch.cat([frame(w[None]) for w in x["windows"]]), setup.frames)


def official_style_a_frame(vt: nn.Module, motion: nn.Module, flow_util, content, style, degree: float, source,
                           window) -> torch.Tensor:
    """One Style-A frame from the official modules, in the Style²Talker release's order: the
    style codes, VToonify's encoder (with its ModRes blocks), PIRenderer's mapping and warping
    nets on the 256² source, then the generator from 32² up, fusing the encoder features and
    warping the feature after the first 64² convolution with PIRenderer's ``warp_image``."""
    dsg = vt.generator
    sg = dsg.generator
    n, layers, dim = style.shape
    structure = dsg.style(style.reshape(n * layers, dim)).reshape(n, layers, dim)
    codes = style.clone()
    for j in range(7, dsg.n_latent):  # the colour transform above the structure layers
        codes[:, j] = dsg.res[j](codes[:, j])
    feats, feat = [], content
    for block in vt.encoder[:-2]:
        feat = block(feat)
        feats.append(feat)
    feats = feats[::-1]
    for j, block in enumerate(vt.encoder[-2]):
        feat = vt.res[j + 1](block(feat), structure[:, j + 1], degree)
    out, skip = feat, vt.encoder[-1](feat)
    descriptor = motion.mapping_net(window)
    flow = motion.warpping_net(source, descriptor)["flow_field"]
    deformation = flow_util.convert_flow_to_deformation(flow)
    for k, (conv1, conv2, to_rgb) in enumerate(zip(sg.convs[6::2], sg.convs[7::2], sg.to_rgbs[3:])):
        if k < len(feats):
            out, mask = vt.fusion_out[k](out, feats[k], degree)
            skip = vt.fusion_skip[k](torch.cat([skip, feats[k] * mask], 1))
        # the release's way of removing the noise input (a normal draw times zero), kept for its cost
        zero = out.new_empty(out.shape[0], 1, 2 * out.shape[2], 2 * out.shape[3]).normal_() * 0.0
        out = conv1(out, codes[:, 2 * k + 7], noise=zero)
        if k == 0:
            out = flow_util.warp_image(out, deformation)
        out = conv2(out, codes[:, 2 * k + 8], noise=zero)
        skip = to_rgb(out, codes[:, 2 * k + 9], skip)
    return skip


def style_a_state(official: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official style_a_frame pair's state (``vtoonify.*``, ``motion.*`` = a PIRenderer
    FaceGenerator) -> a :class:`StyleAGenerator`'s: VToonify-D's keys as they are, PIRenderer's
    mapping and warping nets under ``motion.`` (its editing net is not Style-A's)."""
    out = {}
    for key, value in official.items():
        part, rest = key.split(".", 1)
        if part == "vtoonify":
            out[rest] = value
        elif rest.startswith(("mapping_net.", "warpping_net.")):
            out["motion." + rest] = value
    return out


def build_ours(case: str, setup: Setup, state: dict[str, torch.Tensor]) -> Built:
    """Our side, loaded strictly from the official side's ``state``."""
    from stylization.loading import load_strict

    x = inputs(case, setup)
    name = f"the official {case} weights"
    if case == "pirender":
        from stylization.styletalk.pirender import PIRenderer

        net = load_strict(PIRenderer().eval(), state, name)
        return Built(net, lambda: net(x["source"], x["window"])["fake_image"], 1)
    if case == "stylegan2":
        from stylization.style_a.stylegan2 import Generator

        net = load_strict(Generator(setup.size, 512, 8, channel_multiplier=2).eval(), state, name)
        return Built(net, lambda: net(x["z"])[0], 1)
    if case == "dualstylegan":
        from stylization.style_a.dualstylegan import DualStyleGAN

        net = load_strict(DualStyleGAN(setup.size, 512, 8, channel_multiplier=2, res_index=6).eval(), state, name)
        return Built(net, lambda: net(x["z"], x["ex"], interp_weights=DSG_WEIGHTS)[0], 1)
    if case == "vtoonify_d":
        from stylization.style_a.vtoonify import VToonifyD

        net = load_strict(VToonifyD(setup.size // 4, setup.size).eval(), state, name)
        return Built(net, lambda: net(x["content"], x["style"], setup.degree), 1)
    if case != "style_a_frame":
        raise ValueError(f"unknown case {case!r}; known: {CASES}")
    from stylization.style_a.style_a import StyleAGenerator

    net = StyleAGenerator(setup.size // 4, setup.size, motion_size=setup.pirender_size, refinement=False,
                          warp_skip=False).eval()
    net = load_strict(net, style_a_state(state), name)

    def video() -> torch.Tensor:
        prepared = net.prepare(x["content"], x["style"], None, setup.degree, motion_source=x["source"])
        return torch.cat([net.drive(prepared, w[None])["image"] for w in x["windows"]])

    return Built(net, video, setup.frames)

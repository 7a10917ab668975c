"""The Style-A generator: identity frame + w+ codes + art code + coefficient window -> stylised frame.

It is VToonify-D (content encoder, fusion, frozen DualStyleGAN backbone with ModRes; see
:mod:`stylization.style_a.vtoonify`) plus the coefficient-driven motion of StyleHEAT:

1. the W+ code is the art code on layers ``0 .. art_layers-1`` (structure) and the identity
   code above (VToonify-D without colour transfer; ``art_layers=None`` (every layer) takes the colours
   from the art code too);
2. the content encoder reads the identity frame (RGB + 19 parsing channels / 16) and the
   generator runs from 32×32 up, fusing encoder features at the 32, 64, 128, 256 stages;
3. the :class:`~stylization.style_a.motion.MotionGenerator` turns (identity frame, 73×27
   window) into a flow and a descriptor; the generator's 64×64 feature, right after its first
   (upsampling) convolution, is warped with the flow, together with the 32×32 RGB skip;
4. the :class:`~stylization.style_a.refinement.Refinement` network gives an SFT pair from the
   pre-warp feature (``refine_input="warped"``: from the warped one, as StyleHEAT's code does)
   and the descriptor, applied to the warped feature: ``f · (1 + scale) + shift``.

The encoder skips fused at 64, 128 and 256 are not warped; R exists to remove the ghosting
that causes. (``warp_content=True`` warps them too: the CPU-sized model trained from scratch
uses it, because a briefly trained generator otherwise copies the source's pose through them.)
Ablations (Table 2): ``art_path=False`` (plain StyleGAN2 path: no ModRes, no colour transform,
identity code only), ``fuse_levels=1`` (no middle-level skips: content enters
at 32×32 only), ``refinement=False``.

Parameters map one-to-one onto a VToonify-D ``g_ema`` except ``motion.*`` and ``refinement.*``,
which come from StyleHEAT's ``net_G_ema`` through :data:`STYLEHEAT_RENAMES`
(:func:`styleheat_state`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from stylization.constants import SEMANTIC_DIM
from stylization.style_a.keypoints import KEYPOINT_CHANNELS, KeypointSFT, keypoint_heatmaps
from stylization.style_a.motion import MotionGenerator, warp
from stylization.style_a.refinement import Refinement
from stylization.style_a.vtoonify import VToonifyD

# StyleHEAT net_G_ema prefix -> ours. ``calibrator.condition_{scale,shift}.<top>`` is handled in
# styleheat_state (its lower levels are dropped: StyleHEAT's generator never applies them);
# every other StyleHEAT key (``generator.*``: HFGI inversion; ``audio_warper.*``) is not Style-A's.
STYLEHEAT_RENAMES = {
    "video_warper.mapping_net.": "motion.mapping_net.",
    "video_warper.warping_net.": "motion.warpping_net.",
    "calibrator.": "refinement.",
}


def styleheat_state(state: dict[str, torch.Tensor], levels: int = 4) -> dict[str, torch.Tensor]:
    """StyleHEAT ``net_G_ema`` -> the ``motion.*`` / ``refinement.*`` entries of our state dict.

    ``levels`` is the calibrator's number of U-Net levels (4 for its 64×64 output); the SFT heads
    of the top level become ``refinement.sft_scale`` / ``refinement.sft_shift``.
    """
    out = {}
    top = levels - 1
    for key, value in state.items():
        for head, ours in (("scale", "sft_scale"), ("shift", "sft_shift")):
            prefix = f"calibrator.condition_{head}."
            if key.startswith(prefix):
                index, rest = key[len(prefix):].split(".", 1)
                if int(index) == top:
                    out[f"refinement.{ours}.{rest}"] = value
                break
        else:
            for theirs, ours in STYLEHEAT_RENAMES.items():
                if key.startswith(theirs):
                    out[ours + key[len(theirs):]] = value
                    break
    return out


class MotionParts(nn.Module):
    """The parts of a Style-A generator that StyleHEAT's ``net_G_ema`` supplies (shared, not copied).

    Built alone it has the paper's sizes (the target of ``check_checkpoint.py --kind styleheat``).
    """

    def __init__(self, motion: MotionGenerator | None = None, refinement: Refinement | None = None,
                 with_refinement: bool = True):
        super().__init__()
        self.motion = motion if motion is not None else MotionGenerator()
        if refinement is None and with_refinement and motion is None:
            refinement = Refinement()
        self.refinement = refinement


# The generator's parameter groups that ``stage.train`` switches (see StyleAGenerator.trainable_groups).
TRAIN_GROUPS = ("backbone", "modres", "content", "motion", "refinement")


class StyleAGenerator(VToonifyD):
    """Args (VToonify-D's first): in_size (256), out_size (1024), style_dim, n_mlp,
    channel_multiplier, num_res_layers, channel_cap; then

    * motion_size (256): side of the source image the motion generator reads;
    * motion_base_nc / motion_max_nc / motion_encoder_layers / motion_decoder_layers /
      mapping_layers / descriptor_nc: the MotionGenerator (PIRenderer's 32 / 256 / 5 / 3 / 3 / 256);
    * refinement (True), refinement_width (256), refine_input ("pre_warp" | "warped");
    * art_path (True), art_layers (7; None: every layer, colours from the art code too),
      fuse_levels (None: every level), warp_skip (True: warp the 32×32 RGB skip with the feature),
      warp_content (False: the paper's unwarped encoder skips at 64×64 and above; True warps them
      with the same flow), align_corners (False: StyleHEAT's warp convention, needed for its
      weights; True makes a zero flow the exact identity);
    * keypoints (False): spatial keypoint conditioning for from-scratch models, not in the paper
      (:mod:`stylization.style_a.keypoints`): the warping net also reads the target's keypoint
      heatmaps, and :class:`~stylization.style_a.keypoints.KeypointSFT` modulates
      the 64 and 128 px features with the target's (``keypoint_sft.*``, in the "motion" group);
      keypoint_sigma (1.0): the heatmaps' Gaussian width in pixels of a 64 px map.
    """

    # VToonify-D follows each of the encoder's residual blocks j at 32×32 with its dilated ModRes
    # block res[j + 1]; it has six (res[0] is in the file but unused).
    MAX_RES_LAYERS = 6

    def __init__(self, in_size: int = 256, out_size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, num_res_layers: int = 6, channel_cap: int = 512,
                 motion_size: int = 256, motion_base_nc: int = 32, motion_max_nc: int = 256,
                 motion_encoder_layers: int = 5, motion_decoder_layers: int = 3, mapping_layers: int = 3,
                 descriptor_nc: int = 256, refinement: bool = True, refinement_width: int = 256,
                 refine_input: str = "pre_warp", art_path: bool = True, art_layers: int | None = 7,
                 fuse_levels: int | None = None, warp_skip: bool = True, warp_content: bool = False,
                 align_corners: bool = False, keypoints: bool = False, keypoint_sigma: float = 1.0):
        if not 0 <= num_res_layers <= self.MAX_RES_LAYERS:
            raise ValueError(f"num_res_layers must be in 0..{self.MAX_RES_LAYERS}, got {num_res_layers}")
        super().__init__(in_size, out_size, style_dim, n_mlp, channel_multiplier, num_res_layers, channel_cap)
        if out_size < 128:
            raise ValueError(f"out_size must be at least 128 (the generator warps at 64×64), got {out_size}")
        if refine_input not in ("pre_warp", "warped"):
            raise ValueError(f"refine_input must be 'pre_warp' or 'warped', got {refine_input!r}")
        motion_nc = 3 + KEYPOINT_CHANNELS if keypoints else 3  # RGB (+ the target's heatmaps)
        self.motion = MotionGenerator(SEMANTIC_DIM, descriptor_nc, mapping_layers, motion_nc, motion_base_nc,
                                      motion_max_nc, motion_encoder_layers, motion_decoder_layers)
        channels_64 = self.generator.generator.channels[64]
        self.keypoints, self.keypoint_sigma = bool(keypoints), float(keypoint_sigma)
        self.keypoint_sft = nn.ModuleList(KeypointSFT(self.generator.generator.channels[s]) for s in (64, 128)) \
            if keypoints else None
        self.refinement = Refinement(channels_64, 64, refinement_width, descriptor_nc) if refinement else None
        self.motion_size, self.refine_input = motion_size, refine_input
        self.art_path = art_path
        self.art_layers = self.generator.n_latent if art_layers is None else int(art_layers)
        self.fuse_levels, self.warp_skip, self.align_corners = fuse_levels, warp_skip, align_corners
        self.warp_content = warp_content
        self.n_latent = self.generator.n_latent

    def mix_codes(self, identity: torch.Tensor, art: torch.Tensor | None) -> torch.Tensor:
        """W+ codes [B, n_latent, style_dim]: art on the first ``art_layers`` layers, identity above."""
        if not self.art_path or art is None:
            return identity
        k = self.art_layers
        return torch.cat([art[:, :k], identity[:, k:]], dim=1)

    def motion_input(self, content: torch.Tensor) -> torch.Tensor:
        rgb = content[:, :3]
        if rgb.shape[-1] != self.motion_size:
            rgb = F.interpolate(rgb, size=(self.motion_size, self.motion_size), mode="bilinear", align_corners=False,
                                antialias=rgb.shape[-1] > self.motion_size)
        return rgb

    def forward(self, content: torch.Tensor, identity: torch.Tensor, art: torch.Tensor | None,
                window: torch.Tensor, degree: float = 1.0, motion_source: torch.Tensor | None = None,
                repeats: int = 1, keypoints: torch.Tensor | None = None) -> dict:
        """content [B, 22, H, W] (identity frame RGB in [-1, 1] + parsing / 16), identity and art
        W+ [B, n_latent, style_dim], window [B·repeats, 73, 27], degree in [0, 1]; with
        ``keypoints=True`` models, keypoints [B·repeats, 68, 2]: the targets' landmarks (the
        windows' centre frames) in pixels of the H×W content frame ->

        ``image`` [B·repeats, 3, out, out], ``flow`` [B·repeats, 2, h, w] (pixels of its grid),
        ``masks`` (fusion masks), ``descriptor`` [B·repeats, descriptor_nc]. Each identity is
        encoded once and driven by its ``repeats`` consecutive windows."""
        if self.keypoints and keypoints is None:
            raise ValueError("this generator is conditioned on keypoints (keypoints=True): pass the targets' keypoints")
        return self.drive(self.prepare(content, identity, art, degree, motion_source), window, repeats, keypoints)

    def prepare(self, content: torch.Tensor, identity: torch.Tensor, art: torch.Tensor | None, degree: float = 1.0,
                motion_source: torch.Tensor | None = None) -> dict:
        """The per-identity half of :meth:`forward`, computed once per video: the content encoder's
        features (32×32 up to H), the per-layer codes and the motion generator's source image.
        Arguments as :meth:`forward`; the result goes to :meth:`drive` with every batch of windows."""
        if self.art_path:
            structure, codes = self.style_codes(self.mix_codes(identity, art))
        else:  # the plain StyleGAN2 path: no ModRes (weight 0), no colour transform
            structure, codes, degree = identity, list(identity.unbind(1)), 0.0
        source = self.motion_input(content) if motion_source is None else motion_source
        feats, out, skip = self.encode(content, structure, degree)
        return {"feats": feats, "out": out, "skip": skip, "codes": codes, "source": source, "degree": degree,
                "frame": content.shape[-1]}

    def drive(self, prepared: dict, window: torch.Tensor, repeats: int = 1,
              keypoints: torch.Tensor | None = None) -> dict:
        """The per-frame half of :meth:`forward`: :meth:`prepare`'s identities [B], each driven by
        ``repeats`` consecutive windows of ``window`` [B·repeats, 73, 27] (and keypoints) -> the
        outputs of :meth:`forward`."""
        if self.keypoints and keypoints is None:
            raise ValueError("this generator is conditioned on keypoints (keypoints=True): pass the targets' keypoints")
        feats, out, skip, codes = prepared["feats"], prepared["out"], prepared["skip"], prepared["codes"]
        source, degree = prepared["source"], prepared["degree"]
        if repeats != 1:
            rep = lambda x: x.repeat_interleave(repeats, 0)  # noqa: E731
            feats, codes = [rep(f) for f in feats], [rep(c) for c in codes]
            out, skip, source = rep(out), rep(skip), rep(source)
        target_maps = None
        if self.keypoints:
            frame = prepared["frame"]
            target_maps = keypoint_heatmaps(keypoints, frame, 64, self.keypoint_sigma)
            maps = target_maps if source.shape[-1] == 64 else \
                keypoint_heatmaps(keypoints, frame, source.shape[-1], self.keypoint_sigma)
            source = torch.cat([source, maps.to(source.dtype)], 1)
        with torch.autocast(source.device.type, enabled=False):  # the flow stays fp32 under bf16 autocast:
            flow, descriptor = self.motion(source.float(), window.float())  # a coarse flow moves every pixel
        if self.warp_content:  # feats[0] is the 32×32 feature, fused before the warp point
            feats = feats[:1] + [warp(f, flow, self.align_corners) for f in feats[1:]]

        def edit(k, out, skip):  # k = 0: the 64×64 feature; k = 1: the 128×128 one
            if k == 0:
                warped = warp(out, flow, self.align_corners)
                if self.warp_skip:
                    skip = warp(skip, flow, self.align_corners)
                if self.refinement is not None:
                    scale, shift = self.refinement(out if self.refine_input == "pre_warp" else warped, descriptor)
                    warped = warped * (1 + scale) + shift
                out = warped
            if target_maps is not None and k < len(self.keypoint_sft):
                out = self.keypoint_sft[k](out, target_maps)
            return out, skip

        image, masks = self.synthesize(feats, out, skip, codes, degree, self.fuse_levels, edit)
        return {"image": image, "flow": flow, "masks": masks, "descriptor": descriptor}

    def motion_parts(self) -> MotionParts:
        """A view of ``motion`` and ``refinement`` (for loading StyleHEAT's weights into them)."""
        return MotionParts(self.motion, self.refinement, with_refinement=False)

    def trainable_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part: backbone (DualStyleGAN incl. T_s/T_c), modres (the encoder's dilated
        ModRes), content (encoder + fusion), motion, refinement."""
        groups = {"backbone": list(self.generator.parameters()), "modres": list(self.res.parameters()),
                  "content": [*self.encoder.parameters(), *self.fusion_out.parameters(), *self.fusion_skip.parameters()],
                  "motion": [*self.motion.parameters(),
                             *(self.keypoint_sft.parameters() if self.keypoint_sft is not None else ())]}
        if self.refinement is not None:
            groups["refinement"] = list(self.refinement.parameters())
        return groups

    def configure_trainable(self, flags: Mapping[str, bool]) -> None:
        """Set ``requires_grad`` from ``flags`` (``stage.train``'s generator groups: exactly
        :data:`TRAIN_GROUPS`), then freeze what this configuration never runs, so that no parameter
        looks trainable without receiving a gradient (DDP fails on those):

        * the fusion stages at and above ``fuse_levels`` (the "w/o skip connections" ablation);
        * with ``in_size == out_size``, the top fusion's RGB skip (its feature enters ``out`` only)
          and any fusion above it;
        * with ``art_path=False``, the encoder's ModRes blocks, the structure transform T_s that
          drives them, and DualStyleGAN's colour transforms (the latent layers above
          ``DualStyleGAN.res_index``);
        * whatever VToonify-D's path never runs (:meth:`never_run`).
        """
        unknown, missing = sorted(set(flags) - set(TRAIN_GROUPS)), sorted(set(TRAIN_GROUPS) - set(flags))
        if unknown or missing:
            raise ValueError(f"train flags: unknown {unknown}, missing {missing}; the groups are {list(TRAIN_GROUPS)}")
        groups = self.trainable_groups()
        self.requires_grad_(False)
        for name in TRAIN_GROUPS:
            if flags[name] and name in groups:  # no "refinement" group without a refinement network
                for p in groups[name]:
                    p.requires_grad_(True)
        if self.fuse_levels is not None:
            for k in range(int(self.fuse_levels), len(self.fusion_out)):
                self.fusion_out[k].requires_grad_(False)
                self.fusion_skip[k].requires_grad_(False)
        top = self.top_fusion()
        if top is not None:
            self.fusion_skip[top].requires_grad_(False)
            for k in range(top + 1, len(self.fusion_out)):
                self.fusion_out[k].requires_grad_(False)
                self.fusion_skip[k].requires_grad_(False)
        if not self.art_path:
            self.res.requires_grad_(False)
            dsg = self.generator
            for j in range(dsg.res_index + 1, self.n_latent):
                dsg.res[j].requires_grad_(False)
            dsg.style.requires_grad_(False)  # T_s only drives the encoder's ModRes blocks
        for module in self.never_run():
            module.requires_grad_(False)

    def never_run(self) -> list[nn.Module]:
        """Parts of the VToonify-D layout its forward pass never runs (they exist so that official
        files load strictly). :meth:`VToonifyD.synthesize` starts from the content encoder's 32×32
        feature and takes W+ codes, so the StyleGAN2 constant input, its 4-32 px layers and RGB
        outputs, its mapping network (it only maps exstyle Z+ codes, which stay in the pretrained W
        space) and DualStyleGAN's own structure ModRes blocks (layers up to ``res_index``) never run;
        nor do the encoder's ModRes slot 0 (``res[j + 1]`` follows encoder block j) and the slots past
        ``num_res_layers``."""
        dsg, g = self.generator, self.generator.generator
        below_32 = 2 * (int(math.log2(32)) - 2)  # convs at 8, 16 and 32 px: synthesize() starts at convs[6]
        used_res = len(self.encoder[-2])  # num_res_layers
        return [g.style, g.input, g.conv1, g.to_rgb1, *g.convs[:below_32], *g.to_rgbs[:below_32 // 2],
                *dsg.res[:dsg.res_index + 1], self.res[0], *self.res[used_res + 1:]]

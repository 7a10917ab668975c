"""Training stage ``style_a``: the coefficient-driven, art-stylised renderer.

Per item (:class:`~stylization.data.render_pairs.RenderPairDataset`): a source frame, K runs of F
consecutive target frames of the same clip with their 73×27 windows, an art style and a
reference picture of it. The identity code is pSp of the source frame, the art code pSp of the
reference picture (or, with ``stage.checkpoints.exstyle_codes``, the named entry of
``exstyle_code.npy`` mapped to W+). The generator renders every target from the one source.

Ground truth: the corpus's stylised frames (``stage.targets=corpus``), or a frozen VToonify-D
teacher run on the real target frames (``stage.targets=teacher``, the official recipe).

Losses (weights in ``stage.loss``): MSE, VGG-19 perceptual, optional LPIPS, non-saturating
adversarial (a discriminator conditioned on degree and style, lazy R1), the fusion-mask hinge,
the temporal loss on consecutive frames, an optional mouth-box MSE, and the warping loss PIRenderer trains its motion
generator with (L1 between the real source frame warped by the flow and the real target frame;
off when the motion generator comes pretrained from StyleHEAT, on for training from scratch).
The optional motion residual loss is the part of the error that varies over the frames rendered
from one source (the blur and colour errors they share cancel in it).
What trains is set by ``stage.train``; pretrained
parts come from ``stage.checkpoints`` (VToonify-D ``g_ema``, StyleHEAT, pSp, BiSeNet). With
``stage.motion_phase_from=N`` (or the model config's ``motion_phase_from``) everything but
``stage.motion_phase_groups`` stops learning at step N: a from-scratch renderer first learns the
styles and the head, then the coefficient-driven parts learn the mouth against a fixed renderer.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from stylization.data.render_pairs import RenderPairDataset, read_art_index
from stylization.engine.stage import StepContext, TrainingStage
from stylization.errors import ConfigError
from stylization.loading import load_official, load_style_a
from stylization.metrics.image import psnr, ssim
from stylization.style_a import losses
from stylization.style_a.renderer import StyleARenderer

TRAIN_GROUPS = ("backbone", "modres", "content", "motion", "refinement")


def flow_image(flow: torch.Tensor) -> torch.Tensor:
    """Flow [B, 2, h, w] (pixels) -> RGB [B, 3, h, w] in [0, 1]: hue = direction, value = magnitude."""
    fx, fy = flow[:, 0], flow[:, 1]
    mag = torch.sqrt(fx ** 2 + fy ** 2)
    hue = (torch.atan2(fy, fx) / (2 * torch.pi)) % 1.0
    value = (mag / mag.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]).clamp(0, 1)
    k = (torch.stack([hue * 6 + o for o in (5.0, 3.0, 1.0)], 1)) % 6  # HSV -> RGB with saturation 1
    return value[:, None] * (1 - (torch.minimum(k, 4 - k).clamp(0, 1)))


class StyleAStage(TrainingStage):
    def __init__(self, cfg):
        super().__init__(cfg)
        s = cfg.stage
        self.styles = list(s.styles) if s.get("styles") else sorted(read_art_index(str(cfg.data.root)))
        # a model config may update what trains and the loss weights (the from-scratch CPU model does)
        self.train_flags = {**s.train, **(cfg.model.get("train") or {})}
        self.loss_weights = {k: float(v) for k, v in {**s.loss, **(cfg.model.get("loss") or {})}.items()}
        self.perceptual = losses.VGGPerceptual(s.perceptual_weights) if self.loss_weights["perceptual"] > 0 else None
        self.lpips = losses.LPIPSLoss() if self.loss_weights["lpips"] > 0 else None
        phase = s.get("motion_phase_from")
        self.motion_phase_from = cfg.model.get("motion_phase_from") if phase is None else phase
        self.motion_phase_groups = list(s.get("motion_phase_groups") or ("motion", "refinement", "content"))
        unknown = set(self.motion_phase_groups) - set(TRAIN_GROUPS)
        if unknown:
            raise ConfigError(f"stage.motion_phase_groups: unknown {sorted(unknown)}; known: {list(TRAIN_GROUPS)}")
        self.exstyle = None
        if s.checkpoints.get("exstyle_codes"):
            from stylization.style_a.dualstylegan import load_exstyle_codes

            codes = load_exstyle_codes(str(s.checkpoints.exstyle_codes))
            absent = [n for n in self.styles if n not in codes]
            if absent:
                raise ConfigError(f"styles {absent} are not in {s.checkpoints.exstyle_codes} "
                                  f"(it has {sorted(codes)[:5]} ...)")
            self.exstyle = torch.from_numpy(np.concatenate([codes[n] for n in self.styles]))  # [S, 18, 512] Z+

    # -- building -----------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        s, m = self.cfg.stage, self.cfg.model
        ck = s.checkpoints
        generator = instantiate(m.generator)
        load_style_a(generator, ck.get("vtoonify"), ck.get("styleheat"))
        groups = generator.trainable_groups()
        generator.requires_grad_(False)
        for name in TRAIN_GROUPS:
            if bool(self.train_flags.get(name, False)) and name in groups:
                for p in groups[name]:
                    p.requires_grad_(True)
        levels = generator.fuse_levels
        if levels is not None:  # fusion stages the ablation never uses must not look trainable (DDP)
            for k in range(int(levels), len(generator.fusion_out)):
                generator.fusion_out[k].requires_grad_(False)
                generator.fusion_skip[k].requires_grad_(False)
        top = generator.top_fusion()
        if top is not None:  # in_size >= out_size: the fusion at the output size feeds no RGB skip,
            generator.fusion_skip[top].requires_grad_(False)  # and larger encoder features are never fused
            for k in range(top + 1, len(generator.fusion_out)):
                generator.fusion_out[k].requires_grad_(False)
                generator.fusion_skip[k].requires_grad_(False)
        if not generator.art_path:
            generator.res.requires_grad_(False)
            for j in range(7, generator.n_latent):
                generator.generator.res[j].requires_grad_(False)
        psp = instantiate(m.psp)
        if ck.get("psp"):
            load_official("psp_encoder", str(ck.psp), psp)
        psp.requires_grad_(bool(self.train_flags.get("psp", False)))
        if psp.decoder is not None:
            psp.decoder.requires_grad_(False)  # only its mapping network is used (Z+ -> W+)
        modules = {"generator": generator, "psp": psp}
        if m.parsing == "bisenet":
            if not ck.get("bisenet"):
                raise ConfigError("model.parsing=bisenet needs stage.checkpoints.bisenet (VToonify's faceparsing.pth); "
                                  "or use model.parsing=landmarks")
            modules["parser"] = load_official("bisenet", str(ck.bisenet), instantiate(m.bisenet)).requires_grad_(False)
        elif m.parsing != "landmarks":
            raise ConfigError(f"model.parsing must be bisenet or landmarks, got {m.parsing!r}")
        if s.targets == "teacher":
            if not ck.get("vtoonify"):
                raise ConfigError("stage.targets=teacher needs stage.checkpoints.vtoonify (a VToonify-D vtoonify_s_d.pt)")
            teacher = instantiate({**m.teacher})
            modules["teacher"] = load_official("vtoonify_d", str(ck.vtoonify), teacher).requires_grad_(False)
        if self.loss_weights["adversarial"] > 0:
            modules["discriminator"] = instantiate(m.discriminator, num_styles=len(self.styles))
        return modules

    def build_optimizers(self, modules):
        s = self.cfg.stage
        make = lambda params: torch.optim.Adam(params, lr=float(s.lr), betas=tuple(s.betas))  # noqa: E731
        groups = modules["generator"].trainable_groups()
        late = [p for name in self.motion_phase_groups for p in groups.get(name, []) if p.requires_grad]
        ids = {id(p) for p in late}
        rest = [p for name in ("generator", "psp") for p in modules[name].parameters()
                if p.requires_grad and id(p) not in ids]
        if not late and not rest:
            raise ConfigError("stage.train leaves nothing to train")
        # two parameter groups: "renderer" stops learning at stage.motion_phase_from (lr 0)
        optimizers = {"generator": make([{"params": ps, "name": name} for name, ps in (("renderer", rest), ("motion", late))
                                         if ps])}
        if "discriminator" in modules:
            optimizers["discriminator"] = make(modules["discriminator"].parameters())
        return optimizers

    def build_schedulers(self, optimizers):
        """The "renderer" parameter group's learning rate drops to 0 at ``stage.motion_phase_from``."""
        if self.motion_phase_from is None:
            return {}
        opt = optimizers["generator"]
        keep = lambda step: 1.0  # noqa: E731
        stop = lambda step: 0.0 if self.in_motion_phase(step) else 1.0  # noqa: E731
        return {"generator": torch.optim.lr_scheduler.LambdaLR(
            opt, [stop if g["name"] == "renderer" else keep for g in opt.param_groups])}

    def dataset(self, split: str, deterministic: bool) -> RenderPairDataset:
        s, m, d = self.cfg.stage, self.cfg.model, self.cfg.data
        return RenderPairDataset(
            d.root, split, self.styles, content_size=int(m.generator.in_size), code_size=int(m.psp.input_size),
            out_size=int(m.generator.out_size), pairs_per_item=int(s.pairs_per_item),
            frames_per_item=int(s.frames_per_item), items_per_clip=int(s.items_per_clip), targets=str(s.targets),
            parsing="landmarks" if m.parsing == "landmarks" else "none", deterministic=deterministic,
            seed=int(self.cfg.seed), speakers=d.get("speakers"),
            identity_alignment=str(m.get("identity_alignment", "crop")),
            source_frame=str(s.get("source_frame") or m.get("source_frame") or "random"))

    def train_dataset(self):
        return self.dataset(str(self.cfg.data.train_split), False)

    def val_dataset(self):
        split = self.cfg.data.get("val_split")
        return None if split is None else self.dataset(str(split), True)

    # -- pieces shared by the steps ---------------------------------------------------------

    def renderer(self, modules: dict[str, nn.Module]) -> StyleARenderer:
        return StyleARenderer(modules["generator"], modules["psp"], modules.get("parser"), float(self.cfg.stage.degree))

    def art_codes(self, renderer: StyleARenderer, batch: dict) -> torch.Tensor:
        if self.exstyle is None:
            return renderer.codes(batch["art"])
        z = self.exstyle.to(batch["art"].device)[batch["style_index"]]
        return renderer.generator.generator.generator.map_codes(z)

    def in_motion_phase(self, step: int) -> bool:
        """From ``stage.motion_phase_from`` on, only ``stage.motion_phase_groups`` learn."""
        return self.motion_phase_from is not None and step >= int(self.motion_phase_from)

    def render(self, modules: dict[str, nn.Module], batch: dict, ctx: StepContext,
               frozen_codes: bool = False) -> tuple[dict, torch.Tensor]:
        """Renders every target window of the batch; returns (generator outputs, targets [B, K, F, 3, O, O])."""
        r = self.renderer(modules)
        b, k, f = batch["semantic"].shape[:3]
        with ctx.autocast():
            content = r.content_input(batch["source"], batch.get("source_parsing"))
            if frozen_codes:  # the motion phase: pSp neither learns nor updates its BatchNorm statistics
                psp, mode = modules["psp"], modules["psp"].training
                with torch.no_grad():
                    psp.eval()
                    identity, art = r.codes(batch["identity_face"]), self.art_codes(r, batch)
                    psp.train(mode)
            else:
                identity, art = r.codes(batch["identity_face"]), self.art_codes(r, batch)
            out = r(content, identity, art, batch["semantic"].flatten(0, 2), repeats=k * f)
        out["image"] = out["image"].float()
        if "target" in batch:
            target = batch["target"]
        else:
            target = self.teacher_targets(modules["teacher"], r, batch, identity, art)
        return out, target

    @torch.no_grad()
    def teacher_targets(self, teacher: nn.Module, r: StyleARenderer, batch, identity, art) -> torch.Tensor:
        """VToonify-D on the real target frames with W+ = [art[:7], identity[7:]] (its inference recipe)."""
        b, k, f = batch["target_real"].shape[:3]
        frames = batch["target_real"].flatten(0, 2)
        parsing = batch["target_parsing"].flatten(0, 2) if "target_parsing" in batch else None
        style = r.generator.mix_codes(identity, art).repeat_interleave(k * f, 0)
        out = teacher(r.content_input(frames, parsing), style, r.degree).clamp(-1, 1)
        return out.float().reshape(b, k, f, *out.shape[1:])

    def discriminate(self, disc: nn.Module, images: torch.Tensor, batch: dict, repeats: int) -> torch.Tensor:
        size = int(self.cfg.model.discriminator.size)
        if images.shape[-1] != size:
            images = F.adaptive_avg_pool2d(images, size)
        style = batch["style_index"].repeat_interleave(repeats)
        degree = torch.full((images.shape[0],), float(self.cfg.stage.degree), device=images.device)
        return disc(images, degree, style)

    # -- steps ----------------------------------------------------------------------------

    def training_step(self, batch, ctx: StepContext):
        w = self.loss_weights
        out, target = self.render(ctx.modules, batch, ctx, frozen_codes=self.in_motion_phase(ctx.step))
        b, k, f = batch["semantic"].shape[:3]
        fake, real = out["image"], target.flatten(0, 2)
        terms = {}
        if "discriminator" in ctx.modules:
            disc = ctx.modules["discriminator"]
            r1_every = int(self.cfg.stage.r1_every)
            with ctx.autocast():
                d_loss = losses.d_logistic_loss(self.discriminate(disc, real, batch, k * f).float(),
                                                self.discriminate(disc, fake.detach(), batch, k * f).float())
            terms["d_loss"] = d_loss.detach()
            if r1_every > 0 and ctx.step % r1_every == 0:
                real_r1 = real.detach().requires_grad_(True)
                penalty = losses.r1_penalty(self.discriminate(disc, real_r1, batch, k * f).float(), real_r1)
                d_loss = d_loss + float(self.cfg.stage.r1_gamma) / 2 * penalty * r1_every
                terms["r1"] = penalty.detach()
            ctx.optimize("discriminator", w["adversarial"] * d_loss)
            with ctx.autocast():
                terms["g_adv"] = losses.g_nonsaturating_loss(self.discriminate(disc, fake, batch, k * f).float())
        terms["mse"] = losses.reconstruction_loss(fake, real)
        if self.perceptual is not None:
            self.perceptual.to(fake.device)
            terms["perceptual"] = self.perceptual(fake, real)
        if self.lpips is not None:
            self.lpips.to(fake.device)
            terms["lpips"] = self.lpips(fake, real)
        terms["mask"] = losses.mask_hinge_loss([m.float() for m in out["masks"]], float(self.cfg.stage.degree))
        if w.get("warp", 0) > 0:
            g = ctx.modules["generator"]
            g = getattr(g, "module", g)
            source = batch["source"].repeat_interleave(k * f, 0)
            terms["warp"] = losses.warping_loss(source, out["flow"].float(), batch["target_real"].flatten(0, 2),
                                                g.align_corners)
        if w.get("mouth", 0) > 0:
            terms["mouth"] = losses.mouth_loss(fake, real, batch["target_landmarks"].flatten(0, 2))
        if k * f > 1 and w.get("motion", 0) > 0:
            terms["motion"] = losses.motion_residual_loss(fake.reshape(b, k * f, *fake.shape[1:]),
                                                          real.reshape(b, k * f, *real.shape[1:]))
        if f > 1 and w["temporal"] > 0:
            terms["temporal"] = losses.temporal_loss(fake.reshape(b * k, f, *fake.shape[1:]), target.flatten(0, 1))
        weights = {"g_adv": w["adversarial"], "mse": w["mse"], "perceptual": w["perceptual"], "lpips": w["lpips"],
                   "mask": w["mask"], "temporal": w["temporal"], "warp": w.get("warp", 0.0),
                   "mouth": w.get("mouth", 0.0), "motion": w.get("motion", 0.0)}
        loss = sum(weights[name] * value for name, value in terms.items() if name in weights)
        grad_norm = ctx.optimize("generator", loss)
        return {"loss": loss.detach(), **{n: v.detach() for n, v in terms.items()}, "grad_norm": grad_norm}

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        out, target = self.render(ctx.eval_modules, batch, ctx)
        fake, real = (out["image"].clamp(-1, 1) + 1) / 2, (target.flatten(0, 2) + 1) / 2
        return {"ssim": ssim(fake, real).mean(), "psnr": psnr(fake, real).mean(), "l1": (fake - real).abs().mean()}

    @torch.no_grad()
    def visualize(self, batch, ctx: StepContext):
        out, target = self.render(ctx.eval_modules, batch, ctx)
        kf = batch["semantic"].shape[1] * batch["semantic"].shape[2]
        size = out["image"].shape[-1]
        up = lambda x: F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # noqa: E731
        source = up(batch["source"]).repeat_interleave(kf, 0)
        rows = torch.cat([(source + 1) / 2, (target.flatten(0, 2) + 1) / 2, (out["image"].clamp(-1, 1) + 1) / 2,
                          up(flow_image(out["flow"].float()))], dim=-1)
        return {"source|target|output|flow": rows[:8]}

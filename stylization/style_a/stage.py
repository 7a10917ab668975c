"""Training stage ``style_a``: the coefficient-driven, art-stylised renderer.

Per item (:class:`~stylization.data.render_pairs.RenderPairDataset`, made by :func:`render_dataset`,
which evaluation uses too): a source frame, K runs of F consecutive target frames of the same
clip with their 73×27 windows, an art style and a reference picture of it. The identity code is
pSp of the source frame, the art code pSp of the reference picture (or, with
``stage.checkpoints.exstyle_codes``, the named entry of ``exstyle_code.npy`` mapped to W+):
:meth:`~stylization.style_a.renderer.StyleARenderer.encode_inputs`, as at inference. The
generator renders every target from the one source.

Ground truth: the corpus's stylised frames (``stage.targets=corpus``), or a frozen VToonify-D
teacher run on the real target frames (``stage.targets=teacher``, the official recipe).

The pieces live where they belong: what trains is the generator's rule
(:meth:`~stylization.style_a.style_a.StyleAGenerator.configure_trainable`, switched by
``stage.train``); the objective is :class:`~stylization.style_a.losses.StyleALoss` (weights in
``stage.loss``); the discriminator's update is :class:`AdversarialStep`; pretrained parts come
from ``stage.checkpoints`` (VToonify-D ``g_ema``, StyleHEAT, pSp, BiSeNet) in
:func:`renderer_modules`. With ``stage.motion_phase_from=N`` everything but
``stage.motion_phase_groups`` stops learning at step N: a from-scratch renderer first learns the
styles and the head, then the coefficient-driven parts learn the mouth against a fixed renderer.
With ``stage.loss.sync > 0`` a frozen SyncNet (``stage.sync_expert``) scores each run of 5
rendered frames against its own sound (Wav2Lip's lip-sync expert; :class:`WithSyncAudio` adds the
sound to the items). Every option is read from ``cfg.stage`` / ``cfg.model`` / ``cfg.data`` only, and checked by
:func:`validate_config` before anything is built or read.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from torch.utils.data import Dataset

from stylization.constants import SAMPLES_PER_FRAME
from stylization.data.datasets import LRUCache
from stylization.data.render_inputs import IDENTITY_ALIGNMENTS, RenderInputs
from stylization.data.render_pairs import SOURCE_FRAMES, TARGET_SAMPLINGS, TARGETS, RenderPairDataset, read_art_index
from stylization.engine.stage import StepContext, TrainingStage
from stylization.errors import ConfigError
from stylization.loading import load_exstyle_codes, load_official, load_style_a, lpips_vgg, vgg19_features
from stylization.metrics.image import psnr, ssim
from stylization.metrics.sync import int16_scale, mfcc
from stylization.runs import load_syncnet
from stylization.style_a import losses
from stylization.style_a.renderer import StyleARenderer
from stylization.style_a.style_a import TRAIN_GROUPS, StyleAGenerator
from stylization.syncnet.expert import SyncExpertLoss
from stylization.syncnet.model import AUDIO_WINDOW_STEPS, MFCC_STEPS_PER_FRAME, VIDEO_WINDOW_FRAMES

PARSINGS = ("bisenet", "landmarks")  # model.parsing: BiSeNet's logits, or classes drawn from the landmarks
STAGE_TRAIN_GROUPS = (*TRAIN_GROUPS, "psp")  # the keys of stage.train


def flow_image(flow: torch.Tensor) -> torch.Tensor:
    """Flow [B, 2, h, w] (pixels) -> RGB [B, 3, h, w] in [0, 1]: hue = direction, value = magnitude."""
    fx, fy = flow[:, 0], flow[:, 1]
    mag = torch.sqrt(fx ** 2 + fy ** 2)
    hue = (torch.atan2(fy, fx) / (2 * torch.pi)) % 1.0
    value = (mag / mag.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]).clamp(0, 1)
    k = (torch.stack([hue * 6 + o for o in (5.0, 3.0, 1.0)], 1)) % 6  # HSV -> RGB with saturation 1
    return value[:, None] * (1 - (torch.minimum(k, 4 - k).clamp(0, 1)))


# -- configuration, data and modules (shared with scripts/eval_render.py) -----------------------

def validate_config(cfg: DictConfig) -> None:
    """Raise a :class:`ConfigError` naming the key for any Style-A option that would fail later."""
    s, m = cfg.stage, cfg.model

    def one_of(key: str, value, allowed) -> None:
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {list(allowed)}, got {value!r}")

    n = int(m.generator.num_res_layers)
    if not 0 <= n <= StyleAGenerator.MAX_RES_LAYERS:
        raise ConfigError(f"model.generator.num_res_layers must be in 0..{StyleAGenerator.MAX_RES_LAYERS} "
                          f"(VToonify-D has six dilated ModRes blocks), got {n}")
    one_of("model.identity_alignment", m.identity_alignment, IDENTITY_ALIGNMENTS)
    one_of("model.parsing", m.parsing, PARSINGS)
    one_of("stage.source_frame", s.source_frame, SOURCE_FRAMES)
    one_of("stage.target_sampling", s.target_sampling, TARGET_SAMPLINGS)
    one_of("stage.targets", s.targets, TARGETS)
    for key, names, known in (("stage.train", set(s.train), STAGE_TRAIN_GROUPS),
                              ("stage.motion_phase_groups", set(s.motion_phase_groups), TRAIN_GROUPS)):
        if names - set(known):
            raise ConfigError(f"{key}: unknown groups {sorted(names - set(known))}; known: {list(known)}")
    if set(STAGE_TRAIN_GROUPS) - set(s.train):
        raise ConfigError(f"stage.train must name every group {list(STAGE_TRAIN_GROUPS)} (true or false); "
                          f"missing {sorted(set(STAGE_TRAIN_GROUPS) - set(s.train))}")
    losses.check_weights(s.loss)
    if m.parsing == "bisenet" and not s.checkpoints.bisenet:
        raise ConfigError("model.parsing=bisenet needs stage.checkpoints.bisenet (VToonify's faceparsing.pth); "
                          "or use model.parsing=landmarks")
    if s.targets == "teacher" and not s.checkpoints.vtoonify:
        raise ConfigError("stage.targets=teacher needs stage.checkpoints.vtoonify (a VToonify-D vtoonify_s_d.pt)")
    if float(s.loss.sync) > 0:
        if not s.sync_expert:
            raise ConfigError("stage.loss.sync > 0 needs stage.sync_expert (a stage=syncnet run, or syncnet_v2.model)")
        if int(s.frames_per_item) != VIDEO_WINDOW_FRAMES:
            raise ConfigError(f"stage.loss.sync > 0 needs stage.frames_per_item={VIDEO_WINDOW_FRAMES} (the expert's "
                              f"window), got {s.frames_per_item}")


def render_inputs(cfg: DictConfig) -> RenderInputs:
    """The input builder of the model ``cfg.model`` describes (its sizes, alignment and parsing)."""
    m = cfg.model
    return RenderInputs(content_size=int(m.generator.in_size), code_size=int(m.psp.input_size),
                        identity_alignment=str(m.identity_alignment),
                        parsing="landmarks" if m.parsing == "landmarks" else "none")


def style_names(cfg: DictConfig) -> list[str]:
    """``stage.styles``, or every style of ``<data.root>/art/index.json`` (sorted)."""
    return list(cfg.stage.styles) if cfg.stage.styles else sorted(read_art_index(str(cfg.data.root)))


def render_dataset(cfg: DictConfig, split: str, deterministic: bool) -> RenderPairDataset:
    """The Style-A pairs of ``split`` as ``cfg`` (stage, model, data, seed) describes them."""
    s, m, d = cfg.stage, cfg.model, cfg.data
    return RenderPairDataset(
        d.root, split, styles=style_names(cfg), inputs=render_inputs(cfg), out_size=int(m.generator.out_size),
        pairs_per_item=int(s.pairs_per_item), frames_per_item=int(s.frames_per_item),
        items_per_clip=int(s.items_per_clip), targets=str(s.targets), deterministic=deterministic,
        seed=int(cfg.seed), speakers=d.speakers, source_frame=str(s.source_frame), skip_damaged=bool(d.skip_damaged),
        target_sampling=str(s.target_sampling))


def exstyle_codes(cfg: DictConfig, styles: list[str]) -> torch.Tensor | None:
    """Z+ codes [S, n_latent, style_dim] of ``styles`` from ``stage.checkpoints.exstyle_codes`` (None: unset)."""
    path = cfg.stage.checkpoints.exstyle_codes
    if not path:
        return None
    codes = load_exstyle_codes(str(path))
    absent = [n for n in styles if n not in codes]
    if absent:
        raise ConfigError(f"styles {absent} are not in stage.checkpoints.exstyle_codes={path} "
                          f"(it has {sorted(codes)[:5]} ...)")
    return torch.from_numpy(np.concatenate([codes[n] for n in styles]))


def renderer_modules(cfg: DictConfig) -> dict[str, nn.Module]:
    """The renderer's modules as a run starts them: ``generator`` (with ``stage.checkpoints.vtoonify`` /
    ``styleheat``), ``psp`` (``checkpoints.psp``) and, for ``model.parsing=bisenet``, ``parser``
    (frozen). Built in this order, so one seed gives one initialisation."""
    m, ck = cfg.model, cfg.stage.checkpoints
    generator = instantiate(m.generator)
    load_style_a(generator, ck.vtoonify, ck.styleheat)
    psp = instantiate(m.psp)
    if ck.psp:
        load_official("psp_encoder", str(ck.psp), psp)
    modules = {"generator": generator, "psp": psp}
    if m.parsing == "bisenet":
        modules["parser"] = load_official("bisenet", str(ck.bisenet), instantiate(m.bisenet)).requires_grad_(False)
    return modules


def make_renderer(modules: dict[str, nn.Module], degree: float) -> StyleARenderer:
    return StyleARenderer(modules["generator"], modules["psp"], modules.get("parser"), degree)


@torch.no_grad()
def teacher_targets(teacher: nn.Module, r: StyleARenderer, batch: dict, identity, art) -> torch.Tensor:
    """VToonify-D on the real target frames with W+ = [art[:7], identity[7:]] (its inference recipe)
    -> [B, K, F, 3, O, O] in [-1, 1]."""
    b, k, f = batch["target_real"].shape[:3]
    frames = batch["target_real"].flatten(0, 2)
    parsing = batch["target_parsing"].flatten(0, 2) if "target_parsing" in batch else None
    style = r.generator.mix_codes(identity, art).repeat_interleave(k * f, 0)
    out = teacher(r.content_input(frames, parsing), style, r.degree).clamp(-1, 1)
    return out.float().reshape(b, k, f, *out.shape[1:])


class WithSyncAudio(Dataset):
    """A :class:`RenderPairDataset` whose items also carry each run's sound, for the lip-sync expert:
    ``sync_audio`` float [K, 2M+1, 1, 13, 20], the MFCC windows (SyncNet's: 100 steps a second, 4 per
    video frame, 20 per 5-frame window) at offsets -M..M frames from the run's first frame, offset -M
    first; ``sync_target`` long [K], the in-sync offset's index (M). The clip's sound is padded with
    M frames of silence at each end, so a run near either end has every offset too. Each worker keeps
    the MFCC of up to ``cache_clips`` clips (13 x 4T floats each)."""

    def __init__(self, base: RenderPairDataset, max_offset: int, cache_clips: int = 256):
        self.base, self.max_offset = base, int(max_offset)
        self._mfcc = LRUCache(int(cache_clips))

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def clip_mfcc(self, rec) -> np.ndarray:
        """The clip's sound, padded with M frames of silence before and M + 1 after -> MFCC float32 [13, steps]."""
        wav = np.asarray(self.base.corpus.load_audio(rec), np.float32)
        m = self.max_offset
        silence = np.zeros((m + 1) * SAMPLES_PER_FRAME, np.float32)
        return mfcc(int16_scale(np.concatenate([silence[: m * SAMPLES_PER_FRAME], wav, silence]))).T.astype(np.float32)

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        rec = self.base.clips[self.base.slots[index][0]]
        ceps = self._mfcc.get_or_make(rec.id, lambda: self.clip_mfcc(rec))
        m = self.max_offset
        windows = []
        for start in item["target_frames"].tolist():  # audio offset o of the run at `start`: padded frame start + o + m
            steps = [(start + o + m) * MFCC_STEPS_PER_FRAME for o in range(-m, m + 1)]
            windows.append(np.stack([ceps[:, t:t + AUDIO_WINDOW_STEPS] for t in steps]))
        item["sync_audio"] = torch.from_numpy(np.stack(windows))[:, :, None]
        item["sync_target"] = torch.full((len(windows),), m, dtype=torch.long)
        return item


class AdversarialStep:
    """The discriminator's update (logistic loss, lazy R1 every ``r1_every`` steps) and the generator's
    non-saturating term. The discriminator is conditioned on the degree and the style and judges
    images average-pooled to its ``size``."""

    def __init__(self, *, size: int, degree: float, weight: float, r1_every: int, r1_gamma: float):
        self.size, self.degree, self.weight = int(size), float(degree), float(weight)
        self.r1_every, self.r1_gamma = int(r1_every), float(r1_gamma)

    def discriminate(self, disc: nn.Module, images: torch.Tensor, batch: dict, repeats: int) -> torch.Tensor:
        if images.shape[-1] != self.size:
            images = F.adaptive_avg_pool2d(images, self.size)
        style = batch["style_index"].repeat_interleave(repeats)
        return disc(images, torch.full((images.shape[0],), self.degree, device=images.device), style)

    def __call__(self, ctx: StepContext, batch: dict, fake: torch.Tensor, real: torch.Tensor, repeats: int
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """fake, real [N, 3, O, O] (N = B·repeats) -> (logged discriminator terms, the generator's term)."""
        disc = ctx.modules["discriminator"]
        with ctx.autocast():
            d_loss = losses.d_logistic_loss(self.discriminate(disc, real, batch, repeats).float(),
                                            self.discriminate(disc, fake.detach(), batch, repeats).float())
        logs = {"d_loss": d_loss.detach()}
        if self.r1_every > 0 and ctx.step % self.r1_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            penalty = losses.r1_penalty(self.discriminate(disc, real_r1, batch, repeats).float(), real_r1)
            d_loss = d_loss + self.r1_gamma / 2 * penalty * self.r1_every
            logs["r1"] = penalty.detach()
        ctx.optimize("discriminator", self.weight * d_loss)
        with ctx.autocast():
            g_adv = losses.g_nonsaturating_loss(self.discriminate(disc, fake, batch, repeats).float())
        return logs, g_adv


class StyleAStage(TrainingStage):
    def __init__(self, cfg):
        super().__init__(cfg)
        validate_config(cfg)
        s = cfg.stage
        self.styles = style_names(cfg)
        self.train_flags = {name: bool(s.train[name]) for name in STAGE_TRAIN_GROUPS}
        self.motion_phase_from = s.motion_phase_from
        self.motion_phase_groups = list(s.motion_phase_groups)
        weights = {k: float(v) for k, v in s.loss.items()}
        perceptual = losses.VGGPerceptual(vgg19_features(s.perceptual_weights)) if weights["perceptual"] > 0 else None
        expert = SyncExpertLoss(load_syncnet(str(s.sync_expert))) if weights["sync"] > 0 else None
        self.loss = losses.StyleALoss(weights=weights, degree=float(s.degree),
                                      align_corners=bool(cfg.model.generator.align_corners), perceptual=perceptual,
                                      lpips=losses.LPIPSLoss(lpips_vgg()) if weights["lpips"] > 0 else None,
                                      sync_expert=expert)
        self.adversarial = AdversarialStep(size=int(cfg.model.discriminator.size), degree=float(s.degree),
                                           weight=weights["adversarial"], r1_every=int(s.r1_every),
                                           r1_gamma=float(s.r1_gamma))
        self.exstyle = exstyle_codes(cfg, self.styles)

    # -- building -----------------------------------------------------------------------

    def build_modules(self) -> dict[str, nn.Module]:
        s, m = self.cfg.stage, self.cfg.model
        modules = renderer_modules(self.cfg)
        modules["generator"].configure_trainable({name: self.train_flags[name] for name in TRAIN_GROUPS})
        psp = modules["psp"].requires_grad_(self.train_flags["psp"])
        if psp.decoder is not None:
            psp.decoder.requires_grad_(False)  # only its mapping network is used (Z+ -> W+)
        if s.targets == "teacher":
            teacher = instantiate(m.teacher)
            modules["teacher"] = load_official("vtoonify_d", str(s.checkpoints.vtoonify), teacher).requires_grad_(False)
        if self.loss.weights["adversarial"] > 0:
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

    def train_dataset(self):
        data = render_dataset(self.cfg, str(self.cfg.data.train_split), False)
        if self.loss.sync_expert is not None:
            data = WithSyncAudio(data, int(self.cfg.stage.sync_max_offset))
        return data

    def val_dataset(self):
        split = self.cfg.data.val_split
        return None if split is None else render_dataset(self.cfg, str(split), True)

    # -- steps ----------------------------------------------------------------------------

    def in_motion_phase(self, step: int) -> bool:
        """From ``stage.motion_phase_from`` on, only ``stage.motion_phase_groups`` learn."""
        return self.motion_phase_from is not None and step >= int(self.motion_phase_from)

    def render(self, modules: dict[str, nn.Module], batch: dict, ctx: StepContext,
               frozen_codes: bool = False) -> tuple[dict, torch.Tensor]:
        """Renders every target window of the batch; returns (generator outputs, targets [B, K, F, 3, O, O])."""
        r = make_renderer(modules, float(self.cfg.stage.degree))
        k, f = batch["semantic"].shape[1:3]
        exstyle = None if self.exstyle is None else self.exstyle.to(batch["art"].device)[batch["style_index"]]
        with ctx.autocast():
            if frozen_codes:  # the motion phase: pSp neither learns nor updates its BatchNorm statistics
                psp, mode = modules["psp"], modules["psp"].training
                with torch.no_grad():
                    psp.eval()
                    content, identity, art = r.encode_inputs(batch, exstyle)
                    psp.train(mode)
            else:
                content, identity, art = r.encode_inputs(batch, exstyle)
            out = r(content, identity, art, batch["semantic"].flatten(0, 2), repeats=k * f,
                    keypoints=batch["target_keypoints"].flatten(0, 2))
        out["image"] = out["image"].float()
        target = batch["target"] if "target" in batch else teacher_targets(modules["teacher"], r, batch, identity, art)
        return out, target

    def training_step(self, batch, ctx: StepContext):
        out, target = self.render(ctx.modules, batch, ctx, frozen_codes=self.in_motion_phase(ctx.step))
        logs, g_adv = {}, None
        if "discriminator" in ctx.modules:
            k, f = target.shape[1:3]
            logs, g_adv = self.adversarial(ctx, batch, out["image"], target.flatten(0, 2), k * f)
        loss, terms = self.loss(out, target, batch, g_adv)
        grad_norm = ctx.optimize("generator", loss)
        return {"loss": loss.detach(), **logs, **{n: v.detach() for n, v in terms.items()}, "grad_norm": grad_norm}

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

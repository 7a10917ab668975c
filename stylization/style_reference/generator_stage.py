"""Training stage ``style_ref_generator``: the Style-Aware Generator (Pham et al., CVPRW 2024, §3.4, Eq. 3).

The generator renders a target frame of a clip from a source frame of the same clip, the target's
facial map (its landmarks drawn, :func:`~stylization.data.draw.facial_map`) and the four Intermediate
Style Patterns (ISPs) of the speaker.

**Style Reference Images** (§3.2). When the datasets are built, each speaker of the split gets four
frames retrieved from all of its clips with the key motion templates
(:func:`~stylization.style_reference.templates.retrieve_style_references` over
:func:`~stylization.style_reference.templates.mouth_descriptors` of all its landmarks, TEMPLATES order
none / m / r / o); they are decoded once and kept at ``model.image_size``, with their descriptors and
the speaker's :func:`~stylization.style_reference.templates.descriptor_spread`
(:class:`StyleReferences`).

**Items** (:class:`GeneratorPairDataset`): a source frame of a clip and ``stage.targets`` target frames
of the same clip (one decode serves them all); per target its landmarks (scaled to the image size),
facial map, landmark-drawn label map (:func:`~stylization.data.parsing.landmark_labels`, for Eq. 3's W;
with ``stage.bisenet=FILE`` BiSeNet's parsing of the target frames replaces it, :func:`bisenet_labels`)
and the index of its matched style reference (:func:`~stylization.style_reference.templates.match_templates`
of its mouth descriptor against the speaker's references'); and the speaker's four reference images.

**ISPs** (§3.3): the frozen Style Mapping of ``stage.mapping`` (a ``style_ref_mapping`` run, kept in
this run as the module ``mapping``) maps the neutral image onto each reference, without gradients
(:func:`intermediate_style_patterns`; the four references go through one
:meth:`~stylization.style_reference.mapping.StyleMapping.forward_from_state` of the neutral's state).
The paper's neutral image is one fixed "general image" (a frame of the Obama Weekly Address). We use
the **source frame** as the neutral image instead: the matched-pattern loss L_sp pulls the output
towards I_m, and with one fixed image of another person I_m would show that person's face, so L_sp
would pull every speaker's output towards it. With the source frame, I_m is the speaker's own face in
the matched reference's pose and expression.

**Losses** (``stage.loss``; weight 0: not computed): the generator loss L_G (L1 and VGG-19 perceptual
of the output against the target frame, LSGAN with :mod:`stylization.style_reference.gan`'s
multi-scale PatchGAN, which sees the frame beside its facial map, as pix2pixHD's conditional
discriminators do) and Eq. 3's style-aware photometric loss L_sp = ||W ⊙ (I' − I_m)||₁ with the
region weights of :func:`~stylization.style_reference.generator.region_weights` (mouth 5, eyes 3, skin
1, the rest 0) from the target's label map. One Adam (``generator``) for the generator, one
(``discriminator``) for the discriminator.

**Validation** on the validation split's speakers (their own references): L1 and PSNR of the output
against the target, the same for copying the source frame (``copy_l1``, ``copy_psnr``: the model should
beat them) and for the matched ISP (``matched_psnr``), and L_sp. Grids: source | facial map | the four
ISPs | output | target.

Inference with a run of this stage needs only the run: ``run.module("mapping", run.config.model.mapping)``
and ``run.module("generator", run.config.model.generator)``, then :func:`intermediate_style_patterns`
(at ``model.mapping_image_size``) and the generator (see :func:`render`).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import Dataset

from stylization.data.corpus import Corpus
from stylization.data.datasets import LRUCache
from stylization.data.draw import facial_map
from stylization.data.parsing import landmark_labels
from stylization.data.render_inputs import resize, to_tensor
from stylization.data.render_pairs import SOURCE_FRAMES, closed_mouth_frame, drop_damaged
from stylization.data.video import read_video
from stylization.engine.stage import StepContext, TrainingStage, check_adam_options, loss_weights
from stylization.errors import ConfigError, DataError
from stylization.loading import vgg19_features
from stylization.metrics.image import psnr
from stylization.runs import load_run
from stylization.style_a.losses import VGGPerceptual, check_perceptual_options, perceptual_pyramid
from stylization.style_reference.gan import lsgan_d_loss, lsgan_g_loss
from stylization.style_reference.generator import matched_pattern, region_weights, style_photometric_loss
from stylization.style_reference.templates import (
    TEMPLATES, descriptor_spread, match_templates, mouth_descriptors, retrieve_style_references)

log = logging.getLogger(__name__)

LOSS_TERMS = ("l1", "perceptual", "gan", "sp")  # the keys of stage.loss; sp is Eq. 3's L_sp
MAPPING_STAGE = "style_ref_mapping"
MAPPING_HINT = ("train one with: python train.py stage=style_ref_mapping model=style_ref_mapping_small "
                "data.root=DIR trainer.run_dir=MAPPING")


# -- style reference images and items ---------------------------------------------------------

@dataclass(frozen=True)
class StyleReferences:
    """One speaker's Style Reference Images (§3.2), in TEMPLATES order (none, m, r, o).

    Attributes:
        images: uint8 [4, S, S, 3], the frames resized to S.
        descriptors: [4, 2], their :func:`mouth_descriptors`.
        spread: [2], the speaker's :func:`descriptor_spread` (the scale :func:`match_templates` uses).
        frames: (clip id, frame) of each.
    """

    images: np.ndarray
    descriptors: np.ndarray
    spread: np.ndarray
    frames: tuple[tuple[str, int], ...]

    def match(self, landmarks: np.ndarray) -> np.ndarray:
        """Landmarks [T, 68, 2] (any scale) -> the index [T] of each frame's nearest reference."""
        return match_templates(mouth_descriptors(landmarks), self.descriptors, self.spread)


def speaker_style_references(corpus: Corpus, clips: list, size: int) -> StyleReferences:
    """The Style Reference Images of one speaker, retrieved from all of ``clips`` (its clips) and
    resized to ``size``; only the clips holding a chosen frame are decoded."""
    landmarks = [corpus.load_landmarks(rec) for rec in clips]
    descriptors = mouth_descriptors(np.concatenate(landmarks))
    try:
        chosen = retrieve_style_references(descriptors)
    except ValueError as exc:
        raise DataError(f"speaker {clips[0].speaker!r}: {exc}", corpus.root) from None
    starts = np.cumsum([0] + [len(lm) for lm in landmarks])
    where = [(int(np.searchsorted(starts, i, side="right")) - 1, int(i)) for i in chosen]
    frames = [(ci, i - int(starts[ci])) for ci, i in where]
    images = [None] * len(frames)
    for ci in sorted({ci for ci, _ in frames}):
        rec = clips[ci]
        video = read_video(corpus.path(rec, "video"), fps=rec.fps)
        for j, (cj, t) in enumerate(frames):
            if cj == ci:
                if t >= len(video):
                    raise DataError(f"video has {len(video)} frames, index says {rec.n_frames}",
                                    corpus.path(rec, "video"))
                images[j] = resize(video[t], size)
    return StyleReferences(images=np.stack(images), descriptors=descriptors[chosen],
                           spread=descriptor_spread(descriptors),
                           frames=tuple((clips[ci].id, t) for ci, t in frames))


def target_labels(landmarks: np.ndarray, size: int, scale: float) -> np.ndarray:
    """:func:`landmark_labels` of one face, all background (weight 0 in Eq. 3) when a landmark is missing."""
    if not np.isfinite(landmarks).all():
        return np.zeros((size, size), np.uint8)
    return landmark_labels(landmarks, size, scale)


class GeneratorPairDataset(Dataset):
    """Source / target frames of one clip with the speaker's Style Reference Images (module docstring).

    Args:
        corpus: a :class:`Corpus` or its root; split: "train" | "val" | "test"; speakers: None (all) or a list.
        size: S, the side frames, maps and references are resized to.
        targets: K, target frames per item (one clip decode serves them).
        items_per_clip: items drawn from each clip per epoch.
        deterministic: the frames of an item depend on (seed, index) only, not the epoch (evaluation).
        seed: base seed; source_frame: "random" | "first" | "closed_mouth".
        skip_damaged: leave out clips with damaged files (logged) instead of raising.
        frame_cache_clips: decoded clips kept per worker.

    Items: ``clip_id``, ``speaker``, ``source_frame`` (int), ``target_frames`` [K]; ``source``
    [3, S, S] and ``target`` [K, 3, S, S] in [-1, 1]; ``target_landmarks`` [K, 68, 2] (px at S);
    ``facial_map`` [K, 3, S, S] in [0, 1]; ``labels`` uint8 [K, S, S]; ``pattern_index`` [K] (the
    matched reference, TEMPLATES order); ``references`` [4, 3, S, S] in [-1, 1].
    """

    def __init__(self, corpus, split: str, *, size: int, targets: int, items_per_clip: int, deterministic: bool,
                 seed: int, speakers, source_frame: str, skip_damaged: bool, frame_cache_clips: int = 6):
        if source_frame not in SOURCE_FRAMES:
            raise ConfigError(f"stage.source_frame must be one of {list(SOURCE_FRAMES)}, got {source_frame!r}")
        self.corpus = corpus if isinstance(corpus, Corpus) else Corpus(corpus)
        self.size, self.targets, self.source_frame = int(size), int(targets), source_frame
        self.deterministic, self.seed, self.epoch = bool(deterministic), int(seed), 0
        self.clips = self._sound_clips(self.corpus.clips(split, speakers), bool(skip_damaged))
        if not self.clips:
            raise DataError(f"no usable clip in split {split!r}", self.corpus.root)
        by_speaker: dict[str, list[int]] = {}
        for ci, rec in enumerate(self.clips):
            by_speaker.setdefault(rec.speaker, []).append(ci)
        self.references = {spk: speaker_style_references(self.corpus, [self.clips[c] for c in idx], self.size)
                           for spk, idx in by_speaker.items()}
        # speakers interleaved, so that the first batches of an unshuffled (validation) pass see several
        order = [c for group in itertools.zip_longest(*by_speaker.values()) for c in group if c is not None]
        self.slots = [(ci, j) for j in range(int(items_per_clip)) for ci in order]
        self._videos = LRUCache(frame_cache_clips)

    def _sound_clips(self, clips: list, skip_damaged: bool) -> list:
        problems = {rec.id: p for rec in clips if (p := self.corpus.check_clip(rec)) is not None}
        return drop_damaged(self.corpus, clips, problems, skip_damaged)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.slots)

    def _video(self, ci: int) -> np.ndarray:
        rec = self.clips[ci]

        def load():
            frames = read_video(self.corpus.path(rec, "video"), fps=rec.fps)
            if len(frames) < rec.n_frames:
                raise DataError(f"video has {len(frames)} frames, index says {rec.n_frames}",
                                self.corpus.path(rec, "video"))
            return frames

        return self._videos.get_or_make(ci, load)

    def __getitem__(self, index: int) -> dict:
        ci, _ = self.slots[index]
        rec = self.clips[ci]
        n, s = rec.n_frames, self.size
        rng = np.random.default_rng([self.seed, 0 if self.deterministic else self.epoch, index])
        landmarks = self.corpus.load_landmarks(rec)
        source = int(rng.integers(n))
        if self.source_frame == "first":
            source = 0
        elif self.source_frame == "closed_mouth":
            source = closed_mouth_frame(landmarks)
        targets = rng.integers(0, n, size=self.targets)
        video = self._video(ci)
        scale = s / video.shape[1]
        target_lm = landmarks[targets]
        refs = self.references[rec.speaker]
        maps = np.stack([facial_map(lm, s, scale) for lm in target_lm])
        return {
            "clip_id": rec.id, "speaker": rec.speaker, "source_frame": source,
            "target_frames": torch.from_numpy(targets),
            "source": to_tensor(resize(video[source], s)),
            "target": to_tensor(np.stack([resize(video[t], s) for t in targets])),
            "target_landmarks": torch.from_numpy((target_lm * scale).astype(np.float32)),
            "facial_map": torch.from_numpy(maps).permute(0, 3, 1, 2).float().div(255),
            "labels": torch.from_numpy(np.stack([target_labels(lm, s, scale) for lm in target_lm])),
            "pattern_index": torch.from_numpy(refs.match(target_lm)),
            "references": to_tensor(refs.images),
        }


# -- the model's pieces, shared with inference -------------------------------------------------

def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


def intermediate_style_patterns(mapping: nn.Module, neutral: torch.Tensor, references: torch.Tensor,
                                mapping_size: int) -> torch.Tensor:
    """The ISPs (§3.3): the Style Mapping of ``neutral`` onto each reference, one neutral state per image.

    neutral [B, 3, S, S] and references [B, P, 3, S, S] in [-1, 1] -> ISPs [B, P, 3, S, S] in [-1, 1]
    (fp32). The images go through ``mapping`` (a :class:`~stylization.style_reference.mapping.StyleMapping`,
    [0, 1] in and out) at ``mapping_size`` (resized there and back when S differs). Gradients flow
    unless the caller disables them (the stage does: the mapping is frozen)."""
    b, p, _, h, w = references.shape
    state = mapping.neutral_state(_resize((neutral + 1) / 2, mapping_size))
    isp = mapping.forward_from_state(state, _resize((references.flatten(0, 1) + 1) / 2, mapping_size))["image"]
    return (_resize(isp.float(), h).clamp(0, 1) * 2 - 1).unflatten(0, (b, p))


def render(generator: nn.Module, source: torch.Tensor, facial_maps: torch.Tensor,
           patterns: torch.Tensor) -> torch.Tensor:
    """Frames of one source with several facial maps: source [B, 3, S, S] in [-1, 1], facial_maps
    [B, K, 3, S, S] in [0, 1], patterns (its ISPs) [B, P, 3, S, S] -> frames [B, K, 3, S, S] in [-1, 1]."""
    k = facial_maps.shape[1]
    out = generator(source.repeat_interleave(k, 0), facial_maps.flatten(0, 1), patterns.repeat_interleave(k, 0))
    return out.unflatten(0, (source.shape[0], k))


BISENET_INPUT = 512  # px: face-parsing.PyTorch's input size


@torch.no_grad()
def bisenet_labels(parser: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Face-parsing classes [N, S, S] (long) of frames [N, 3, S, S] in [-1, 1], as face-parsing.PyTorch
    parses a face: resized to 512² (bilinear), ImageNet-normalised, the main logits' argmax brought back
    to S by nearest sampling."""
    from stylization.constants import IMAGENET_MEAN, IMAGENET_STD

    parser.to(frames.device)
    x = F.interpolate((frames.float() + 1) / 2, size=(BISENET_INPUT, BISENET_INPUT), mode="bilinear",
                      align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    labels = parser((x - mean) / std)[0].argmax(1, keepdim=True).float()
    return F.interpolate(labels, size=frames.shape[-2:], mode="nearest")[:, 0].long()


# -- the stage ---------------------------------------------------------------------------------

def validate_config(cfg: DictConfig) -> None:
    """Raise a :class:`ConfigError` naming the key for any option that would fail later (no I/O)."""
    s, m = cfg.stage, cfg.model
    check_adam_options(s, ("batch_size", "targets", "items_per_clip"))
    weights = loss_weights(s.loss, LOSS_TERMS)
    if weights["l1"] + weights["perceptual"] <= 0:
        raise ConfigError("stage.loss.l1 or stage.loss.perceptual must be > 0 (the reconstruction of the target frame)")
    if s.source_frame not in SOURCE_FRAMES:
        raise ConfigError(f"stage.source_frame must be one of {list(SOURCE_FRAMES)}, got {s.source_frame!r}")
    size = int(m.image_size)
    check_perceptual_options(s, size, float(weights["perceptual"]), "set stage.loss.perceptual to 0")
    g = m.generator
    step = 2 ** int(g.levels)
    if size % step or size < 2 * step:
        raise ConfigError(f"model.image_size={size} must be a multiple of 2 ** model.generator.levels = {step} "
                          f"and at least {2 * step}")
    if int(g.n_patterns) != len(TEMPLATES):
        raise ConfigError(f"model.generator.n_patterns must be {len(TEMPLATES)} (the key motion templates "
                          f"{list(TEMPLATES)}), got {g.n_patterns}")
    if int(m.discriminator.in_channels) != 6:
        raise ConfigError(f"model.discriminator.in_channels must be 6 (the frame and its facial map), "
                          f"got {m.discriminator.in_channels}")


class StyleRefGeneratorStage(TrainingStage):
    """The Style-Aware Generator with the frozen Style Mapping of ``stage.mapping`` (module docstring)."""

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        validate_config(cfg)
        s = cfg.stage
        if s.get("mapping") is None:
            raise ConfigError(f"stage.mapping must name a {MAPPING_STAGE} run (its frozen Style Mapping makes the "
                              f"Intermediate Style Patterns); {MAPPING_HINT}")
        run = load_run(str(s.mapping), hint=MAPPING_HINT)
        if run.stage != MAPPING_STAGE or "mapping" not in run.weights:
            raise ConfigError(f"stage.mapping={s.mapping} is a {run.stage!r} run without a Style Mapping; it must be "
                              f"a {MAPPING_STAGE} run; {MAPPING_HINT}")
        self.mapping_run = run
        # recorded in the config the checkpoints save, so that the run rebuilds without the mapping run
        OmegaConf.update(cfg, "model.mapping", OmegaConf.to_container(run.config.model.mapping, resolve=True),
                         force_add=True)
        OmegaConf.update(cfg, "model.mapping_image_size", int(run.config.model.image_size), force_add=True)
        self.mapping_size = int(run.config.model.image_size)
        self.weights = loss_weights(s.loss, LOSS_TERMS)
        self.scales = int(s.perceptual_scales)
        self.perceptual = None
        if self.weights["perceptual"] > 0:
            layers = {str(k): float(v) for k, v in s.perceptual_layers.items()}
            self.perceptual = VGGPerceptual(vgg19_features(s.perceptual_weights), layers)
        # Eq. 3's face parsing: BiSeNet's (face-parsing.PyTorch weights) when given, else the landmark-drawn map
        self.parser = None
        if s.get("bisenet") is not None:
            from stylization.loading import load_official

            self.parser = load_official("bisenet", str(s.bisenet)).eval().requires_grad_(False)

    # -- building -----------------------------------------------------------------------

    def build_modules(self):
        m, run = self.cfg.model, self.mapping_run
        mapping = run.module("mapping", run.config.model.mapping).requires_grad_(False)
        return {"generator": instantiate(m.generator), "discriminator": instantiate(m.discriminator),
                "mapping": mapping}

    def build_optimizers(self, modules):
        s = self.cfg.stage
        betas = tuple(float(b) for b in s.betas)
        return {name: torch.optim.Adam(modules[name].parameters(), lr=float(s.lr), betas=betas)
                for name in ("generator", "discriminator")}

    def split_dataset(self, split: str) -> GeneratorPairDataset:
        s, d = self.cfg.stage, self.cfg.data
        return GeneratorPairDataset(
            d.root, split, size=int(self.cfg.model.image_size), targets=int(s.targets),
            items_per_clip=int(s.items_per_clip), deterministic=split != str(d.train_split), seed=int(self.cfg.seed),
            speakers=d.speakers, source_frame=str(s.source_frame), skip_damaged=bool(d.skip_damaged))

    # -- steps ----------------------------------------------------------------------------

    def _forward(self, batch: dict, modules: dict, ctx: StepContext) -> dict:
        """ISPs (no gradient) and the generator's frames of a batch of B items x K targets, flattened to
        N = B·K rows: sources, targets, maps, labels, index [N]; patterns [N, 4, 3, S, S]; fake [N, 3, S, S]."""
        k = batch["target"].shape[1]
        with torch.no_grad(), ctx.autocast():
            isp = intermediate_style_patterns(modules["mapping"], batch["source"], batch["references"],
                                              self.mapping_size)
        with ctx.autocast():
            fake = render(modules["generator"], batch["source"], batch["facial_map"], isp)
        targets = batch["target"].flatten(0, 1)
        labels = batch["labels"].flatten(0, 1) if self.parser is None else bisenet_labels(self.parser, targets)
        return {"isp": isp, "sources": batch["source"].repeat_interleave(k, 0),
                "targets": targets,
                "maps": batch["facial_map"].flatten(0, 1), "labels": labels,
                "index": batch["pattern_index"].flatten(0, 1), "patterns": isp.repeat_interleave(k, 0),
                "fake": fake.flatten(0, 1).float()}

    def _discriminate(self, disc: nn.Module, images: torch.Tensor, maps: torch.Tensor) -> list[torch.Tensor]:
        """The discriminator's maps of frames [N, 3, S, S] in [-1, 1] beside their facial maps (both [0, 1])."""
        return disc(torch.cat([(images + 1) / 2, maps], 1))

    def objective(self, f: dict, ctx: StepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's weighted loss and its unweighted terms (weight-0 terms are not computed)."""
        w, terms, fake, targets = self.weights, {}, f["fake"], f["targets"]
        if w["l1"] > 0:
            terms["l1"] = F.l1_loss(fake, targets)
        if w["perceptual"] > 0:
            terms["perceptual"] = perceptual_pyramid(self.perceptual, fake, targets, self.scales)
        if w["gan"] > 0:
            with ctx.autocast():
                terms["gan"] = lsgan_g_loss(self._discriminate(ctx.modules["discriminator"], fake, f["maps"]))
        if w["sp"] > 0:
            terms["sp"] = style_photometric_loss(fake, matched_pattern(f["patterns"], f["index"]),
                                                 region_weights(f["labels"]))
        return sum(w[k] * v for k, v in terms.items()), terms

    def training_step(self, batch, ctx: StepContext):
        f = self._forward(batch, ctx.modules, ctx)
        loss, terms = self.objective(f, ctx)
        logs = {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()},
                "grad_norm": ctx.optimize("generator", loss)}
        if self.weights["gan"] > 0:
            disc = ctx.modules["discriminator"]
            with ctx.autocast():
                d_loss = lsgan_d_loss(self._discriminate(disc, f["targets"], f["maps"]),
                                      self._discriminate(disc, f["fake"].detach(), f["maps"]))
            ctx.optimize("discriminator", d_loss)
            logs["d_loss"] = d_loss.detach()
        return logs

    @torch.no_grad()
    def validation_step(self, batch, ctx: StepContext):
        f = self._forward(batch, ctx.eval_modules, ctx)
        fake = f["fake"].clamp(-1, 1)
        real, out, copy = ((x + 1) / 2 for x in (f["targets"], fake, f["sources"]))
        matched = matched_pattern(f["patterns"], f["index"])
        return {"l1": (out - real).abs().mean(), "psnr": psnr(out, real).mean(),
                "copy_l1": (copy - real).abs().mean(), "copy_psnr": psnr(copy, real).mean(),
                "matched_psnr": psnr((matched + 1) / 2, real).mean(),
                "sp": style_photometric_loss(fake, matched, region_weights(f["labels"]))}

    @torch.no_grad()
    def visualize(self, batch, ctx: StepContext):
        f = self._forward(batch, ctx.eval_modules, ctx)
        columns = [f["sources"], f["maps"] * 2 - 1, *f["patterns"].unbind(1), f["fake"], f["targets"]]
        rows = torch.cat([(c.float().clamp(-1, 1) + 1) / 2 for c in columns], dim=-1)
        return {"source|facial_map|isp_" + "|isp_".join(TEMPLATES) + "|output|target": rows[:8]}

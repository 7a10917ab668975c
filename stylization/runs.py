"""One way to load a training run: its saved config, step, stage and modules, EMA or raw.

Every consumer of a trained run (evaluation scripts, the inference pipeline, a stage that
starts from another stage's run) goes through :func:`load_run`; the per-stage assemblers
below turn a :class:`Run` into the inference object of that stage::

    run = load_run("runs/style_e_small")          # a run directory (its newest checkpoint) or a file
    model = style_e_from_run(run, sampler="ancestral")
    run.step, run.stage, run.module_names          # 1159, "style_e", ["audio2exp", "denoiser"]

Modules are rebuilt from the config saved *in the checkpoint* (what ran), never from today's
YAML, and loaded strictly. The file format is :mod:`stylization.engine.checkpoint`'s.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from stylization.engine.checkpoint import FORMAT, load_file, resolve_checkpoint
from stylization.errors import CheckpointError, ConfigError

STYLE_E_HINT = "train one with: python train.py stage=style_e data.root=DIR"
STYLE_A_HINT = "train one with: python train.py stage=style_a data.root=DIR"
STYLETALK_HINT = "train one with: python train.py stage=styletalk model=styletalk_small data.root=DIR"
AUDIO2EXP_HINT = "SadTalker's auido2exp_00300-model.pth, or a run of: python train.py stage=audio2exp data.root=DIR"

# ``_target_`` paths that moved since runs were saved: old runs keep loading.
MOVED_TARGETS = {
    "stylization.style_e.text_encoder.ClipTextEncoder": "stylization.loading.clip_text_encoder",
    "stylization.style_e.cgan.StyleECGANStage": "stylization.style_e.cgan_stage.StyleECGANStage",
    "stylization.style_e.cgan.WindowDiscriminator": "stylization.style_e.discriminator.WindowDiscriminator",
}


def _current_targets(node):
    """The saved config with moved ``_target_`` paths replaced (plain containers in, out)."""
    if isinstance(node, dict):
        return {k: (MOVED_TARGETS.get(v, v) if k == "_target_" else _current_targets(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_current_targets(v) for v in node]
    return node


@dataclasses.dataclass
class Run:
    """A training checkpoint, read once.

    Attributes:
        path: the checkpoint file (a run directory resolves to its newest checkpoint).
        config: the resolved config the run was trained with (``config.yaml``'s content).
        step: optimisation steps done.
        stage: the stage's name (``config.stage.name``), e.g. ``"style_e"``.
        module_names: the modules the checkpoint holds, sorted.
        use_ema: whether :meth:`module` loads the EMA weights where the run kept an EMA.
    """

    path: str
    config: DictConfig
    step: int
    stage: str
    module_names: list[str]
    use_ema: bool
    weights: dict[str, dict] = dataclasses.field(repr=False)  # per module: the state dict :meth:`module` loads

    def module(self, name: str, node: DictConfig | None = None) -> nn.Module:
        """Module ``name`` built from the saved config ``node`` (default ``config.model``), weights
        loaded strictly (EMA when ``use_ema`` and kept, else raw), in eval mode."""
        if name not in self.weights:
            raise CheckpointError(f"has no module {name!r} (it has {self.module_names})", self.path)
        module = instantiate(self.config.model if node is None else node)
        try:
            module.load_state_dict(self.weights[name], strict=True)
        except RuntimeError as exc:  # load_state_dict's report of missing / unexpected / mis-shaped keys
            raise CheckpointError(f"module {name!r} does not fit the model its saved config builds (the code changed "
                                  f"since this run?): {str(exc).splitlines()[0]}", self.path) from None
        return module.eval()


def _run_from_state(path: str, state: dict, use_ema: bool, hint: str = "") -> Run:
    if state.get("format") != FORMAT:
        raise CheckpointError(f"not a training checkpoint of this project (format {state.get('format')!r})"
                              + (f"; {hint}" if hint else ""), path)
    ema = state["ema"] if use_ema else {}
    weights = {name: ema.get(name, raw) for name, raw in state["modules"].items()}
    config = OmegaConf.create(_current_targets(state["config"]))
    return Run(path=path, config=config, step=int(state["step"]), stage=str(state["stage"]),
               module_names=sorted(weights), use_ema=use_ema, weights=weights)


def load_run(path: str | os.PathLike, *, use_ema: bool = True, hint: str = "") -> Run:
    """A run directory (its newest loadable checkpoint) or a checkpoint file -> :class:`Run`.

    Raises :class:`~stylization.errors.CheckpointError` (naming the path, followed by ``hint``)
    when the path is missing, holds no checkpoint, or is not a training checkpoint of this project.
    """
    file, state = resolve_checkpoint(path, hint)
    return _run_from_state(file, state, use_ema, hint)


# -- per-stage assemblers ---------------------------------------------------------------------

def _require(run: Run, name: str, hint: str) -> None:
    if name not in run.module_names:
        raise CheckpointError(f"is a {run.stage!r} run without a {name!r} module; {hint}", run.path)


def _style_e_sampler(run: Run, sampler: str | None, steps: int | None):
    """The run's reverse diffusion with ``sampler`` / ``steps`` overriding its config; None for a cGAN run."""
    from stylization.style_e.diffusion import diffusion_sampler

    if not run.config.stage.diffusion:
        if sampler is not None or steps is not None:
            raise ConfigError(f"{run.path} is a {run.stage!r} run: it generates in one shot, so sampler= and steps= "
                              "do not apply; leave them null")
        return None
    d = run.config.model.diffusion
    return diffusion_sampler(timesteps=int(d.timesteps), sampler=str(sampler if sampler is not None else d.sampler),
                             steps=int(steps if steps is not None else d.steps), eta=float(d.eta))


def style_e_from_run(run: Run, *, sampler: str | None = None, steps: int | None = None,
                     text_encoder: nn.Module | None = None, precision: str = "auto"):
    """A ``style_e`` or ``style_e_cgan`` run -> :class:`~stylization.style_e.generate.StyleE` (eval mode).

    Args:
        sampler, steps: override the run's ``model.diffusion.sampler`` / ``steps`` (diffusion runs only).
        text_encoder: use this one instead of building the run's ``model.text_encoder``.
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` (see :mod:`stylization.style_e.generate`).
    """
    from stylization.style_e.generate import StyleE

    _require(run, "denoiser", STYLE_E_HINT)
    model = run.config.model
    denoiser = run.module("denoiser", model.denoiser)
    audio2exp = run.module("audio2exp", model.audio2exp)
    if text_encoder is None and model.denoiser.use_text:
        text_encoder = instantiate(model.text_encoder)
    return StyleE(denoiser, audio2exp, text_encoder, _style_e_sampler(run, sampler, steps),
                  overlap_frames=int(model.overlap_frames), precision=precision, channels_last=True).eval()


def audio2exp_from_run(run: Run) -> nn.Module:
    """The Audio2Exp of an ``audio2exp`` run (its whole model) or of a Style-E run (``model.audio2exp``)."""
    _require(run, "audio2exp", f"give {AUDIO2EXP_HINT}")
    model = run.config.model
    return run.module("audio2exp", model if "_target_" in model else model.audio2exp)


def style_a_renderer_from_run(run: Run):
    """A ``style_a`` run -> :class:`~stylization.style_a.renderer.StyleARenderer` (eval mode), at the
    style degree it was trained with and with its identity alignment."""
    from stylization.style_a.renderer import StyleARenderer

    _require(run, "generator", STYLE_A_HINT)
    model = run.config.model
    generator = run.module("generator", model.generator)
    psp = run.module("psp", model.psp)
    parser = run.module("parser", model.bisenet) if model.parsing == "bisenet" else None
    renderer = StyleARenderer(generator, psp, parser, float(run.config.stage.degree)).eval()
    renderer.identity_alignment = str(model.identity_alignment)
    return renderer


def styletalk_from_run(run: Run):
    """A ``styletalk`` run -> :class:`~stylization.styletalk.generate.StyleTalkMotion` (EMA generator, eval mode)."""
    from stylization.styletalk.generate import StyleTalkMotion

    if run.stage != "styletalk":
        raise CheckpointError(f"is a {run.stage!r} run, not a 'styletalk' one; {STYLETALK_HINT}", run.path)
    return StyleTalkMotion(run.module("generator", run.config.model.generator))


def _run_or_official(path: str, official_name: str, kind: str, hint: str):
    """(Run, None) for a run directory or training checkpoint, else (None, the released file's path):
    a file of another format, or a directory holding ``official_name`` and no run."""
    if os.path.isdir(path):
        official = os.path.join(path, official_name)
        if os.path.isfile(official) and not os.path.isdir(os.path.join(path, "checkpoints")):
            return None, official
        return load_run(path, hint=hint), None
    state = load_file(path, f"{hint}, or the released {official_name} ({kind})")
    if state.get("format") == FORMAT:
        return _run_from_state(path, state, use_ema=True, hint=hint), None
    return None, path


def load_styletalk(path: str | os.PathLike):
    """StyleTalk for inference (:class:`~stylization.styletalk.generate.StyleTalkMotion`, eval mode): a
    ``styletalk`` run (directory or checkpoint; EMA weights), or the released ``styletalk_checkpoint.pth``
    (a file, or a directory holding it), loaded strictly into the released size."""
    from stylization.loading import load_official
    from stylization.styletalk.generate import StyleTalkMotion

    run, official = _run_or_official(os.fspath(path), "styletalk_checkpoint.pth", "styletalk", STYLETALK_HINT)
    return styletalk_from_run(run) if run is not None else StyleTalkMotion(load_official("styletalk", official))


SAAS_HINT = "train one with: python train.py stage=saas model=saas_small data.root=DIR"
SAAS_EDIT_HINT = "train one with: python train.py stage=saas_edit model=saas_edit_small data.root=DIR"


def saas_from_run(run: Run, stage: str = "saas"):
    """A ``saas`` (audio-driven) or ``saas_edit`` (video-driven) run, as ``stage`` says ->
    :class:`~stylization.saas.generate.SAASMotion` (EMA generator, eval mode)."""
    from stylization.saas.generate import SAASMotion

    if run.stage != stage:
        raise CheckpointError(f"is a {run.stage!r} run, not a {stage!r} one; "
                              f"{SAAS_EDIT_HINT if stage == 'saas_edit' else SAAS_HINT}", run.path)
    return SAASMotion(run.module("generator", run.config.model.generator))


def load_saas(path: str | os.PathLike, stage: str = "saas"):
    """SAAS for inference (:class:`~stylization.saas.generate.SAASMotion`): a ``saas`` / ``saas_edit``
    run as ``stage`` says (directory or checkpoint; EMA weights), or the released ``audio_driven.pth`` /
    ``video_driven.pth`` (a file, or a directory holding it), loaded strictly into the released size."""
    from stylization.loading import load_official
    from stylization.saas.generate import SAASMotion

    name, kind = ("video_driven.pth", "saas_video_driven") if stage == "saas_edit" else \
        ("audio_driven.pth", "saas_audio_driven")
    hint = SAAS_EDIT_HINT if stage == "saas_edit" else SAAS_HINT
    run, official = _run_or_official(os.fspath(path), name, kind, hint)
    return saas_from_run(run, stage) if run is not None else SAASMotion(load_official(kind, official))


SAAS_POSE_HINT = "train one with: python train.py stage=saas_pose model=saas_pose_small stage.codebook=SAAS_RUN data.root=DIR"
RELEASED_POSE_FILES = ("audio2pose.pth", "pose_codebook.pth")


def load_saas_pose(path: str | os.PathLike, style_encoder: Callable[[], nn.Module] | None = None):
    """SAAS's poses from speech (:class:`~stylization.saas.generate.SAASPose`): a ``saas_pose`` run
    (directory or checkpoint; EMA predictor), or a folder holding the released ``audio2pose.pth`` and
    ``pose_codebook.pth`` (SAAS's ``checkpoints/audio2pose``), which read style codes with the released
    SAAS model's style encoder: ``style_encoder()`` gives it (called only for the released files)."""
    from stylization.loading import load_official
    from stylization.saas.generate import SAASPose

    path = os.fspath(path)
    released = os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f)) for f in RELEASED_POSE_FILES) \
        and not os.path.isdir(os.path.join(path, "checkpoints"))
    if released:
        if style_encoder is None:
            raise CheckpointError("the released pose files read style codes with SAAS's style encoder: use them with "
                                  "motion=saas and saas= the released audio_driven.pth", path)
        return SAASPose(load_official("saas_audio2pose", os.path.join(path, RELEASED_POSE_FILES[0])),
                        load_official("saas_pose_codebook", os.path.join(path, RELEASED_POSE_FILES[1])),
                        style_encoder())
    run = load_run(path, hint=SAAS_POSE_HINT)
    if run.stage != "saas_pose":
        raise CheckpointError(f"is a {run.stage!r} run, not a 'saas_pose' one; {SAAS_POSE_HINT}", run.path)
    m = run.config.model
    return SAASPose(run.module("predictor", m.predictor), run.module("pose_codebook", m.pose_codebook),
                    run.module("style_codebook", m.style_codebook))


STYLE_REF_MOTION_HINT = ("train one with: python train.py stage=style_ref_motion model=style_ref_motion_small "
                         "data.root=DIR (and transfer a style with scripts/style_transfer.py)")
STYLE_REF_TRANSFER_STAGE = "style_ref_transfer"  # the stage name scripts/style_transfer.py writes its runs under


def load_style_ref_motion(path: str | os.PathLike, strength: float = 1.0):
    """The reference-frame method's motion (:class:`~stylization.style_reference.motion.StyleRefMotion`):
    a ``style_ref_motion`` run, or a ``style_ref_transfer`` run written by ``scripts/style_transfer.py``
    (its transferred generator, blended with the untransferred one by ``strength``, and the feature
    bank of its audio when it kept one)."""
    from stylization.style_reference.motion import FeatureBank, StyleRefMotion

    run = load_run(path, hint=STYLE_REF_MOTION_HINT)
    if run.stage not in ("style_ref_motion", STYLE_REF_TRANSFER_STAGE):
        raise CheckpointError(f"is a {run.stage!r} run, not a 'style_ref_motion' or transferred one; "
                              f"{STYLE_REF_MOTION_HINT}", run.path)
    if not 0.0 <= float(strength) <= 2.0:
        raise ConfigError(f"style_strength must be in [0, 2], got {strength}")
    generator = run.module("generator")
    if run.stage == "style_ref_motion":
        return StyleRefMotion(generator).eval()
    bank = None
    if "feature_bank" in run.weights:
        p = run.config.transfer_inputs
        bank = FeatureBank(run.weights["feature_bank"]["bank"], int(p.projection_k), float(p.projection))
    return StyleRefMotion(generator, run.module("untransferred"), bank, strength).eval()


PIRENDER_HINT = "train one with: python train.py stage=pirender model=pirender_small data.root=DIR"


def pirender_from_run(run: Run) -> nn.Module:
    """A ``pirender`` run -> :class:`~stylization.styletalk.pirender.PIRenderer` (eval mode; EMA weights
    where kept). The run's modules are the renderer's three children (their state dicts, prefixed by
    the module names, are the released ``net_G_ema`` layout)."""
    from stylization.styletalk.pirender_stage import PARTS

    for part in PARTS:
        _require(run, part, PIRENDER_HINT)
    renderer = instantiate(run.config.model.renderer)
    state = {f"{part}.{k}": v for part in PARTS for k, v in run.weights[part].items()}
    try:
        renderer.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"does not fit the PIRenderer its saved config builds (the code changed since this "
                              f"run?): {str(exc).splitlines()[0]}", run.path) from None
    return renderer.eval()


def load_pirender(path: str | os.PathLike) -> nn.Module:
    """PIRenderer for inference (eval mode, ``image_size`` set): a ``pirender`` run (directory or
    checkpoint; EMA weights), or the released ``renderer_checkpoint.pt`` / PIRender face checkpoint (a
    file, or a directory holding ``renderer_checkpoint.pt``) at 256²."""
    from stylization.loading import load_official

    run, official = _run_or_official(os.fspath(path), "renderer_checkpoint.pt", "pirender", PIRENDER_HINT)
    if run is not None:
        renderer = pirender_from_run(run)
        renderer.image_size = int(run.config.model.image_size)
    else:
        renderer = load_official("pirender", official).eval()
        renderer.image_size = 256
    return renderer


SYNCNET_HINT = "train one with: python train.py stage=syncnet model=syncnet_small data.root=DIR"


def load_syncnet(path: str | os.PathLike) -> nn.Module:
    """A SyncNet for LSE-D / LSE-C, eval mode: a ``syncnet`` run directory or checkpoint of this project
    (rebuilt from its config; EMA weights), or else the released ``syncnet_v2.model`` (strict)."""
    from stylization.loading import build_module, extract_state_dict, load_strict

    path = os.fspath(path)
    if os.path.isdir(path):
        run = load_run(path, hint=SYNCNET_HINT)
    else:
        state = load_file(path, "the official syncnet_v2.model or a syncnet run's checkpoint")
        if state.get("format") != FORMAT:  # the released file, already read: load it strictly
            return load_strict(build_module("syncnet"), extract_state_dict("syncnet", state, path), path).eval()
        run = _run_from_state(path, state, use_ema=True, hint=SYNCNET_HINT)
    _require(run, "syncnet", SYNCNET_HINT)
    return run.module("syncnet")


def load_audio2exp(path: str | os.PathLike, module: nn.Module) -> nn.Module:
    """SadTalker's released file (loaded strictly into ``module``), or an ``audio2exp`` / Style-E run
    directory or checkpoint of this project (rebuilt from its own config; EMA weights)."""
    from stylization.loading import load_official

    path = os.fspath(path)
    if os.path.isdir(path):
        return audio2exp_from_run(load_run(path, hint=f"give {AUDIO2EXP_HINT}"))
    if not path.endswith(".safetensors"):
        state = load_file(path, f"give {AUDIO2EXP_HINT}")
        if state.get("format") == FORMAT:
            return audio2exp_from_run(_run_from_state(path, state, use_ema=True))
    return load_official("sadtalker_audio2exp", path, module)

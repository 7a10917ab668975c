"""Loading official (third-party) checkpoint files into our modules, strictly.

Each kind knows its file's top-level structure and any documented key renames; the weights
are read with ``torch.load(..., weights_only=True)`` (or safetensors) and loaded with
``strict=True``. Errors name the file and the missing, unexpected or mis-shaped keys.

Kinds so far (``KINDS`` builds each at the official configuration):

* ``sadtalker_audio2exp`` — SadTalker's ``auido2exp_00300-model.pth`` (``{"model": state_dict,
  "epoch": ...}``) or ``SadTalker_V0.0.2_*.safetensors`` (one flat dict: the keys containing
  ``audio2exp`` with the ``audio2exp.`` prefix removed). Into :class:`~stylization.style_e.audio2exp.Audio2Exp`.
* ``stylegan2_generator`` — rosinality's converted or training checkpoints; the ``g_ema`` entry.
* ``stylegan2_discriminator`` — a training checkpoint (or one converted with ``--disc``); ``d``.
* ``dualstylegan_generator`` — DualStyleGAN's ``checkpoint/<style>/generator.pt`` (``g_ema``).
* ``psp_encoder`` — DualStyleGAN / VToonify's ``encoder.pt`` (``{'state_dict': encoder.* + decoder.*,
  'latent_avg', 'opts'}``), into :class:`~stylization.style_a.psp.PSP` (Z+ encoder); ``latent_avg``
  ([18, 512] or [512]) fills the module's buffer.
* ``vtoonify_d`` — VToonify-D's ``vtoonify_s_d.pt`` etc. (``{'g_ema': whole model}``), into
  :class:`~stylization.style_a.vtoonify.VToonifyD`.
* ``styleheat`` — StyleHEAT's ``StyleHEAT_visual.pt`` (``{'net_G_ema': whole model}``): its
  ``video_warper.*`` and ``calibrator.*`` renamed by :func:`~stylization.style_a.style_a.styleheat_state`
  (the rest, HFGI inversion and the audio warper, is not Style-A's and is ignored), into the
  motion generator and refinement network of a Style-A generator (:class:`~stylization.style_a.style_a.MotionParts`).
* ``bisenet`` — face-parsing.PyTorch / VToonify's ``faceparsing.pth`` (a plain state dict), into
  :class:`~stylization.style_a.bisenet.BiSeNet` (19 classes).
* ``deep3d_recon`` — Deep3DFaceRecon's ``epoch_20.pth`` (``{'net_recon': state_dict, ...}``), into
  :class:`~stylization.data.recon_net.ReconNet`.

Plain state dicts and DataParallel ``module.`` prefixes are accepted for every kind.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from stylization.engine.checkpoint import load_file
from stylization.errors import CheckpointError

SOURCES = {
    "sadtalker_audio2exp": "SadTalker's release (checkpoints/auido2exp_00300-model.pth or "
                           "SadTalker_V0.0.2_256.safetensors); see checkpoints/README.md",
    "stylegan2_generator": "rosinality/stylegan2-pytorch (convert_weight.py on stylegan2-ffhq-config-f.pkl gives "
                           "stylegan2-ffhq-config-f.pt); see checkpoints/README.md",
    "stylegan2_discriminator": "a rosinality/stylegan2-pytorch training checkpoint, or convert_weight.py --disc; "
                               "see checkpoints/README.md",
    "dualstylegan_generator": "DualStyleGAN's release (checkpoint/<style>/generator.pt); see checkpoints/README.md",
    "psp_encoder": "DualStyleGAN's / VToonify's release (checkpoint/encoder.pt); see checkpoints/README.md",
    "vtoonify_d": "VToonify's release (checkpoint/vtoonify_d_<style>/vtoonify_s_d.pt); see checkpoints/README.md",
    "styleheat": "StyleHEAT's release (checkpoints/StyleHEAT_visual.pt, FeiiYin/StyleHEAT); see checkpoints/README.md",
    "bisenet": "VToonify's release (checkpoint/faceparsing.pth, from face-parsing.PyTorch); see checkpoints/README.md",
    "deep3d_recon": "Deep3DFaceRecon_pytorch's released model (checkpoints/<name>/epoch_20.pth); "
                    "see checkpoints/README.md",
}
# The entry of a dict checkpoint that holds each kind's weights.
ENTRIES = {"stylegan2_generator": "g_ema", "stylegan2_discriminator": "d", "dualstylegan_generator": "g_ema",
           "deep3d_recon": "net_recon", "psp_encoder": "state_dict", "bisenet": "state_dict",
           "vtoonify_d": "g_ema", "styleheat": "net_G_ema"}


def build_module(kind: str) -> nn.Module:
    """The module of ``kind`` at the configuration of the official file."""
    if kind == "sadtalker_audio2exp":
        from stylization.style_e.audio2exp import Audio2Exp

        return Audio2Exp()
    if kind == "stylegan2_generator":
        from stylization.style_a.stylegan2 import Generator

        return Generator(1024, 512, 8, channel_multiplier=2)
    if kind == "stylegan2_discriminator":
        from stylization.style_a.stylegan2 import Discriminator

        return Discriminator(1024, channel_multiplier=2)
    if kind == "dualstylegan_generator":
        from stylization.style_a.dualstylegan import DualStyleGAN

        return DualStyleGAN(1024, 512, 8, channel_multiplier=2, res_index=6)
    if kind == "psp_encoder":
        from stylization.style_a.psp import PSP

        return PSP(1024, z_plus=True)
    if kind == "vtoonify_d":
        from stylization.style_a.vtoonify import VToonifyD

        return VToonifyD(256, 1024)
    if kind == "styleheat":
        from stylization.style_a.style_a import MotionParts

        return MotionParts()
    if kind == "bisenet":
        from stylization.style_a.bisenet import BiSeNet

        return BiSeNet(19)
    if kind == "deep3d_recon":
        from stylization.data.recon_net import ReconNet

        return ReconNet()
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}")


def _read(path: str, kind: str) -> dict:
    if path.endswith(".safetensors"):
        if not os.path.isfile(path):
            raise CheckpointError(f"checkpoint file not found; get it from {SOURCES[kind]}", path)
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(path)
        except Exception as exc:
            raise CheckpointError(f"not a readable safetensors file ({exc})", path) from None
    return load_file(path, f"get it from {SOURCES[kind]}")


def extract_state_dict(kind: str, obj: dict, path: str) -> dict[str, torch.Tensor]:
    """The module state dict inside an official file's top-level structure."""
    if kind == "sadtalker_audio2exp":
        if "model" in obj and isinstance(obj["model"], dict):
            return obj["model"]
        keys = [k for k in obj if "audio2exp" in k]
        if keys:
            return {k.split("audio2exp.", 1)[1]: obj[k] for k in keys}
        raise CheckpointError("neither {'model': state_dict} nor keys containing 'audio2exp': not a SadTalker "
                              "Audio2Exp checkpoint", path)
    if kind == "styleheat":
        from stylization.style_a.style_a import styleheat_state

        entry = obj.get("net_G_ema", obj)
        if not isinstance(entry, dict) or not any(k.startswith(("video_warper.", "calibrator.")) for k in entry):
            raise CheckpointError("no 'net_G_ema' with video_warper.* / calibrator.* keys: not a StyleHEAT checkpoint",
                                  path)
        return styleheat_state(_strip_module_prefix(entry))
    if kind in ENTRIES:
        entry = ENTRIES[kind]
        if entry in obj and isinstance(obj[entry], dict):
            return _strip_module_prefix(obj[entry])
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            return _strip_module_prefix(obj)  # a plain state dict
        raise CheckpointError(f"no {entry!r} entry (top-level keys: {sorted(obj)[:8]}): not a {kind} checkpoint", path)
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}", path)


def _strip_module_prefix(state: dict) -> dict:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def check_keys(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: str) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``state`` has exactly ``own``'s keys and shapes."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = [f"{label} {items[:5]}{' ...' if len(items) > 5 else ''} ({len(items)})"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped))
                 if items]
        raise CheckpointError("does not match the model: " + "; ".join(parts), path)


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> nn.Module:
    """``module.load_state_dict(state, strict=True)`` with a one-line error naming the bad keys."""
    check_keys(module.state_dict(), state, path)
    module.load_state_dict(state, strict=True)
    return module


def load_style_a(generator: nn.Module, vtoonify: str | None = None, styleheat: str | None = None) -> nn.Module:
    """Initialise a :class:`~stylization.style_a.style_a.StyleAGenerator` from official files.

    ``vtoonify`` (a VToonify-D ``g_ema`` file) must match every parameter except ``motion.*`` and
    ``refinement.*`` exactly; ``styleheat`` (``StyleHEAT_visual.pt``) supplies those two through
    the documented rename map (only ``motion.*`` when the model has no refinement network).
    """
    if vtoonify is not None:
        vtoonify = os.fspath(vtoonify)
        state = extract_state_dict("vtoonify_d", _read(vtoonify, "vtoonify_d"), vtoonify)
        own = {k: v for k, v in generator.state_dict().items() if not k.startswith(("motion.", "refinement."))}
        check_keys(own, state, vtoonify)
        generator.load_state_dict(state, strict=False)  # strictness checked above, for this subset
    if styleheat is not None:
        parts = generator.motion_parts()
        styleheat = os.fspath(styleheat)
        state = extract_state_dict("styleheat", _read(styleheat, "styleheat"), styleheat)
        if parts.refinement is None:
            state = {k: v for k, v in state.items() if k.startswith("motion.")}
        load_strict(parts, state, styleheat)
    return generator


def load_official(kind: str, path: str | os.PathLike, module: nn.Module | None = None) -> nn.Module:
    """Read an official file of ``kind`` and load it strictly into ``module`` (default: :func:`build_module`)."""
    path = os.fspath(path)
    if kind not in SOURCES:
        raise CheckpointError(f"unknown checkpoint kind {kind!r}; known: {sorted(SOURCES)}", path)
    obj = _read(path, kind)
    module = build_module(kind) if module is None else module
    state = extract_state_dict(kind, obj, path)
    if kind == "psp_encoder":  # pSp adds latent_avg to every code; it lives beside the state dict
        avg = obj.get("latent_avg")
        if not torch.is_tensor(avg) or avg.shape[-1] != 512:
            raise CheckpointError("has no 'latent_avg' [18, 512] (or [512]) beside its state_dict", path)
        state = {**state, "latent_avg": avg.reshape(-1, 512).expand_as(module.latent_avg).clone()}
    return load_strict(module, state, path)

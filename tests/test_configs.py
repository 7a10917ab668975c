"""The real config tree composes, and what it composes builds.

Every stage × model × ablation × data combination that makes sense is composed with Hydra's
compose API (as ``python train.py`` would) and the stage's model nodes are instantiated:
small models for real, paper-size models on the ``meta`` device (shapes only, nothing
allocated). No weights are downloaded: the paper-size CLIP builder is replaced by a stand-in
that records its arguments.
"""

from __future__ import annotations

import pytest
import torch
from conftest import compose_train
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

DATA = ("synthetic", "mead", "hdtf")
ROOT = "data.root=/nonexistent/corpus"  # composition only: nothing is read
# stage -> {model: size}, and the ablations each stage takes (None: no ablation).
MODELS = {
    "audio2exp": {"audio2exp": "paper", "audio2exp_small": "small"},
    "style_e": {"style_e": "paper", "style_e_small": "small"},
    "style_e_cgan": {"style_e_cgan": "paper", "style_e_small": "small"},
    "style_a": {"style_a": "paper", "style_a_small": "small"},
    "syncnet": {"syncnet": "paper", "syncnet_small": "small"},
    "styletalk": {"styletalk": "paper", "styletalk_small": "small"},
    "pirender": {"pirender": "paper", "pirender_small": "small"},
    "saas_codebook": {"saas_codebook": "paper", "saas_codebook_small": "small"},
    "saas": {"saas": "paper", "saas_small": "small"},
    "saas_edit": {"saas_edit": "paper", "saas_edit_small": "small"},
    "saas_pose": {"saas_pose": "paper", "saas_pose_small": "small"},
    "style_ref_motion": {"style_ref_motion": "paper", "style_ref_motion_small": "small"},
    "style_ref_mapping": {"style_ref_mapping": "paper", "style_ref_mapping_small": "small"},
    "style_ref_generator": {"style_ref_generator": "paper", "style_ref_generator_small": "small"},
}
ABLATIONS = {
    "audio2exp": (None,),
    "style_e": (None, "no_text"),
    "style_e_cgan": (None, "no_text"),
    "style_a": (None, "no_art", "no_refine", "no_skip"),
    "syncnet": (None,),
    "styletalk": (None, "no_dyffn", "dyffn_k4", "dyffn_k16", "no_style_d", "no_triplet", "no_sync_d"),
    "pirender": (None,),
    "saas_codebook": (None, "saas_no_codebook", "saas_codes_250", "saas_codes_750", "saas_no_triplet", "saas_no_cls"),
    "saas": (None, "saas_no_hyperstyle", "saas_no_triplet", "saas_no_cls", "saas_no_dis"),
    "saas_edit": (None,),
    "saas_pose": (None,),
    "style_ref_motion": (None,),
    "style_ref_mapping": (None,),
    "style_ref_generator": (None,),
}
# What each ablation switches (key in the composed config, value).
ABLATION_KEYS = {"no_text": ("model.denoiser.use_text", False), "no_art": ("model.generator.art_path", False),
                 "no_refine": ("model.generator.refinement", False), "no_skip": ("model.generator.fuse_levels", 1),
                 "no_dyffn": ("model.generator.kernels", 1), "dyffn_k4": ("model.generator.kernels", 4),
                 "dyffn_k16": ("model.generator.kernels", 16), "no_style_d": ("stage.loss.style", 0.0),
                 "no_triplet": ("stage.loss.trip", 0.0), "no_sync_d": ("stage.loss.sync", 0.0),
                 "saas_no_codebook": ("model.codebook.use_codebook", False), "saas_codes_250": ("model.codebook.n_codes", 250),
                 "saas_codes_750": ("model.codebook.n_codes", 750), "saas_no_hyperstyle": ("model.generator.hyperstyle", False),
                 "saas_no_triplet": ("stage.loss.trip", 0.0), "saas_no_cls": ("stage.loss.cls", 0.0),
                 "saas_no_dis": ("stage.loss.dis", 0.0)}
# Keys that configure a stage, not a network: they live in configs/stage/ or a recipe, never in model.
STAGE_KEYS = ("train", "loss", "motion_phase_from", "source_frame", "motion_phase_groups")

COMBOS = [(stage, model, ablation) for stage, models in MODELS.items() for model in models
          for ablation in ABLATIONS[stage]]


def overrides(stage: str, model: str, ablation: str | None, data: str = "synthetic") -> list[str]:
    out = [f"stage={stage}", f"model={model}", f"data={data}", ROOT]
    return out + ([f"ablation={ablation}"] if ablation else [])


def combo_id(combo) -> str:
    return "-".join(str(x) for x in combo if x is not None)


def model_nodes(cfg: DictConfig) -> dict[str, DictConfig]:
    """The nodes the stage builds networks from: every ``_target_`` node of ``cfg.model`` (or
    the model itself when it is one network) and of ``cfg.stage`` below its own ``_target_``."""
    if "_target_" in cfg.model:
        nodes = {"model": cfg.model}
    else:
        nodes = {f"model.{k}": v for k, v in cfg.model.items() if isinstance(v, DictConfig) and "_target_" in v}
    nodes.update({f"stage.{k}": v for k, v in cfg.stage.items() if isinstance(v, DictConfig) and "_target_" in v})
    return nodes


class FakeTextEncoder(nn.Module):
    """Stands in for CLIP at paper size: building the real one downloads ViT-B/32."""

    calls: list[dict] = []

    def __init__(self, **kwargs):
        super().__init__()
        FakeTextEncoder.calls.append(kwargs)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_every_combination_composes_and_builds(combo, monkeypatch):
    stage, model, ablation = combo
    size = MODELS[stage][model]
    if ablation and ABLATION_KEYS[ablation][0].startswith("stage."):
        # a loss weight: composing it is the whole check (the networks are the un-ablated combination's)
        cfg = compose_train(overrides(stage, model, ablation))
        key, value = ABLATION_KEYS[ablation]
        assert OmegaConf.select(cfg, key) == value and cfg.stage.name == stage, f"{combo}: {key}"
        base = compose_train(overrides(stage, model, None))
        assert cfg.model == base.model, f"{combo} changes the model"
        return
    composed = {data: compose_train(overrides(stage, model, ablation, data)) for data in DATA}
    for data, cfg in composed.items():
        assert cfg.stage.name == stage, f"{combo} data={data} composed stage {cfg.stage.name!r}"
        assert cfg.data.root == "/nonexistent/corpus" and "name" not in cfg.data
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
        leaked = [k for k in STAGE_KEYS if k in cfg.model]
        assert not leaked, f"stage keys {leaked} in the model config of {combo}"
        if ablation:
            key, value = ABLATION_KEYS[ablation]
            assert OmegaConf.select(cfg, key) == value, f"{combo}: {key}"
    # The corpus never changes a network: the model and stage nodes agree across data choices.
    reference = composed["synthetic"]
    for data, cfg in composed.items():
        assert cfg.model == reference.model and cfg.stage == reference.stage, f"{combo}: data={data} changes the model"

    cfg = reference
    nodes = model_nodes(cfg)
    assert nodes, f"{combo}: no _target_ node to build"
    if size == "paper" and "model.text_encoder" in nodes:
        FakeTextEncoder.calls = []
        monkeypatch.setattr("stylization.loading.clip_text_encoder", FakeTextEncoder)
    built = {}
    for name, node in nodes.items():
        extra = {"num_styles": 2} if node._target_.endswith("ConditionalDiscriminator") else {}
        if size == "paper":
            with torch.device("meta"):
                built[name] = instantiate(node, **extra)
        else:
            built[name] = instantiate(node, **extra)
        assert isinstance(built[name], nn.Module), f"{combo}: {name} built {type(built[name]).__name__}"
    if size == "paper" and "model.text_encoder" in nodes:
        assert FakeTextEncoder.calls == [{"backend": "open_clip", "model": "ViT-B-32", "pretrained": "openai",
                                          "hf_model": None}]
    if stage in ("style_e", "style_e_cgan") and size == "paper":
        # the facts: DiffMLP width 512 x 8 blocks, about 5 M parameters
        n = sum(p.numel() for p in built["model.denoiser"].parameters())
        assert 4e6 < n < 6e6, n


@pytest.mark.parametrize("recipe, stage, model, values", [
    ("style_e_cpu", "style_e", "style_e_small",
     {"stage.batch_size": 24, "stage.lr": 1e-3, "trainer.ema_decay": 0.99}),
    ("style_a_cpu", "style_a", "style_a_small", {"stage.lr": 1e-3, "trainer.ema_decay": 0.995}),
    ("audio2exp_cpu", "audio2exp", "audio2exp_small", {}),
    ("syncnet_cpu", "syncnet", "syncnet_small", {"model.input_crop": "lower_half", "trainer.max_minutes": 10}),
    ("styletalk_cpu", "styletalk", "styletalk_small", {"stage.style_frames": 128, "trainer.max_minutes": 10}),
    ("pirender_cpu", "pirender", "pirender_small", {"model.image_size": 64, "trainer.max_minutes": 10}),
    ("saas_codebook_cpu", "saas_codebook", "saas_codebook_small", {"model.codebook.dim": 128, "trainer.max_minutes": 10}),
    ("saas_cpu", "saas", "saas_small", {"model.generator.style_dim": 128, "model.codebook.dim": 128,
                                        "stage.codebook_phase.lr": 5e-4, "trainer.max_minutes": 10}),
    ("saas_edit_cpu", "saas_edit", "saas_edit_small", {"model.generator.source": "video", "model.codebook.dim": 128,
                                                       "stage.loss.cycle": 1000.0, "trainer.max_minutes": 10}),
    ("saas_pose_cpu", "saas_pose", "saas_pose_small", {"model.predictor.hidden": 64, "trainer.max_minutes": 10}),
    ("style_ref_motion_cpu", "style_ref_motion", "style_ref_motion_small",
     {"model.hidden": 96, "stage.lr": 1e-3, "trainer.max_minutes": 10}),
    ("style_ref_mapping_cpu", "style_ref_mapping", "style_ref_mapping_small",
     {"model.image_size": 64, "stage.loss.perceptual": 0.0, "trainer.max_minutes": 10}),
    ("style_ref_generator_cpu", "style_ref_generator", "style_ref_generator_small",
     {"model.image_size": 64, "model.generator.levels": 3, "stage.loss.perceptual": 0.0, "trainer.max_minutes": 10}),
])
def test_recipes_are_what_the_short_commands_select(recipe, stage, model, values):
    """``experiment=<recipe>`` and ``stage=<s> model=<s>_small`` are one configuration, the recipe's."""
    by_recipe = compose_train([f"experiment={recipe}", ROOT])
    by_model = compose_train([f"stage={stage}", f"model={model}", ROOT])
    assert OmegaConf.to_container(by_recipe) == OmegaConf.to_container(by_model)
    assert by_recipe.stage.name == stage
    for key, value in values.items():
        assert OmegaConf.select(by_recipe, key) == value, key
    # the command line still wins over the recipe
    assert compose_train([f"experiment={recipe}", ROOT, "trainer.max_minutes=3"]).trainer.max_minutes == 3


def test_paper_size_defaults_are_the_papers():
    """Without a small model no CPU recipe sneaks in: the stage files' own values hold."""
    cfg = compose_train(["stage=style_e", ROOT])
    assert (cfg.stage.batch_size, cfg.stage.lr, cfg.trainer.ema_decay) == (128, 2e-4, 0.999)
    assert cfg.model.denoiser.width == 512 and cfg.model.text_encoder.pretrained == "openai"
    cfg = compose_train(["stage=style_a", ROOT])
    assert (cfg.stage.lr, cfg.trainer.ema_decay) == (1e-4, 0.999) and cfg.model.generator.out_size == 1024
    cfg = compose_train(["stage=styletalk", ROOT])  # the StyleTalk paper: Eq. 9 weights, margin 5, L = 64, Adam 1e-4
    assert dict(cfg.stage.loss) == {"rec": 88.0, "trip": 1.0, "sync": 1.0, "style": 1.0, "tem": 1.0}
    assert (cfg.stage.triplet_margin, cfg.stage.clip_frames, cfg.stage.lr) == (5.0, 64, 1e-4)
    assert (cfg.model.generator.dim, cfg.model.generator.kernels, cfg.model.generator.max_style_frames) == (256, 8, 256)
    cfg = compose_train(["stage=saas", ROOT])  # SAAS: the official audio_driven.json / style_exrtaction.json weights
    assert dict(cfg.stage.loss) == {"recon": 1000.0, "mouth": 20.0, "cls": 50.0, "dis": 50.0, "trip": 10.0, "tem": 1.0}
    assert dict(cfg.stage.codebook_phase.loss) == {"recon": 10.0, "cls": 0.01, "trip": 0.01}
    assert (cfg.model.codebook.dim, cfg.model.codebook.layers, cfg.model.codebook.n_codes) == (256, 12, 500)
    cfg = compose_train(["stage=saas_edit", ROOT])  # video_driven.json: the cycle term weighs as the reconstruction
    assert cfg.stage.loss.cycle == 1000.0 and cfg.model.generator.source == "video"
    cfg = compose_train(["stage=saas_pose", ROOT])  # audio2pose.json / pose_encoder.json
    assert (cfg.stage.batch_size, cfg.model.pose_codebook.n_codes, cfg.model.predictor.hidden) == (64, 200, 200)

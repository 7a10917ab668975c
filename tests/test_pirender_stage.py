"""stage=pirender: PIRender's warping phase, then the full model; the phase decides what learns; a run
resumes bit-exactly across the switch; bad options fail naming their key; the configs are the
released size and the CPU recipe."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from conftest import compose_train
from omegaconf import OmegaConf

from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import Trainer
from stylization.errors import ConfigError
from stylization.loading import build_module
from stylization.styletalk.pirender_stage import PARTS, PIRenderStage

# A 32 px PIRenderer (the tiny corpus's frames): flow at 8x8, a few thousand parameters a part.
TINY = ["model.image_size=32", "model.renderer.descriptor_nc=8", "model.renderer.warp_base_nc=4",
        "model.renderer.max_nc=8", "model.renderer.encoder_layers=3", "model.renderer.decoder_layers=1",
        "model.renderer.edit_base_nc=4", "model.renderer.edit_layers=2"]


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    """The tiny corpus as it is: real-frame targets need no art index."""
    return tiny_corpus


def overrides(root, run_dir, steps: int, extra=()) -> list[str]:
    trainer = {"max_steps": steps, "max_minutes": "null", "num_workers": 0, "log_every_steps": 1,
               "val_every_steps": steps, "val_batches": 1, "image_every_steps": steps,
               "checkpoint_every_steps": 2, "keep_checkpoints": 0, "device": "cpu", "ema_decay": 0.5}
    return (["stage=pirender", "model=pirender_small", f"data.root={root}", f"trainer.run_dir={run_dir}", *TINY,
             "stage.batch_size=2", "stage.pairs_per_item=1", "stage.items_per_clip=1", "stage.warp_steps=2"]
            + [f"trainer.{k}={v}" for k, v in trainer.items()] + list(extra))


def train(cfg, crash_at: int | None = None) -> tuple[Trainer, list[dict]]:
    """Run the trainer as train.py does; record, per step, the logged terms and which parts got
    gradients (and the editing net's weights before the step). ``crash_at``: die at that step."""
    stage, record = build_stage(cfg), []
    original = stage.training_step

    def training_step(batch, ctx):
        if ctx.step == crash_at:
            raise RuntimeError("simulated crash")
        before = {k: v.clone() for k, v in ctx.modules["editing_net"].state_dict().items()}
        logs = original(batch, ctx)
        grads = {p: any(q.grad is not None for q in ctx.modules[p].parameters()) for p in PARTS}
        after = ctx.modules["editing_net"].state_dict()
        record.append({"step": ctx.step, "logs": set(logs), "grads": grads,
                       "editing_moved": any(not torch.equal(before[k], after[k]) for k in before)})
        return logs

    stage.training_step = training_step
    os.makedirs(cfg.trainer.run_dir, exist_ok=True)
    trainer = Trainer(cfg, stage, init_distributed("cpu"))
    trainer.fit()
    return trainer, record


def state(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {**{f"{p}.{k}": v for p in PARTS for k, v in trainer.raw_modules[p].state_dict().items()},
            **{f"ema.{p}.{k}": v for p in PARTS for k, v in trainer.ema[p].shadow.state_dict().items()}}


def test_the_phases_decide_what_learns_and_a_run_resumes_exactly(corpus, tmp_path, caplog):
    """Steps 0-1 (warping phase) train the mapping and warping nets from the warp term alone: the
    editing net gets no gradient and keeps its weights; steps 2-3 train all three. A run killed
    after its step-2 checkpoint resumes in the full phase and ends bit-for-bit as an uninterrupted one."""
    with caplog.at_level(logging.INFO, logger="stylization.train"):
        full, record = train(compose_train(overrides(corpus, tmp_path / "full", 4)))
    assert [r["step"] for r in record] == [0, 1, 2, 3]
    for r in record[:2]:
        assert r["grads"] == {"mapping_net": True, "warpping_net": True, "editing_net": False}
        assert not r["editing_moved"] and "warp_l1" in r["logs"] and "final_l1" not in r["logs"]
    for r in record[2:]:
        assert all(r["grads"].values()) and r["editing_moved"] and {"warp_l1", "final_l1"} <= r["logs"]
    val = [r.getMessage() for r in caplog.records if " val " in r.getMessage()]
    assert len(val) == 1 and all(f"{k}=" in val[0] for k in ("psnr", "ssim", "warp_psnr"))

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(compose_train(overrides(corpus, tmp_path / "crash", 4)), crash_at=3)
    resumed, record = train(compose_train(overrides(corpus, tmp_path / "crash", 4)))
    assert [r["step"] for r in record] == [2, 3] and all(r["grads"]["editing_net"] for r in record)
    a, b = state(full), state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_perceptual_terms_validation_and_grid(corpus, tmp_path, monkeypatch):
    """With the VGG-19 terms (random weights here) at two scales and no warping phase, the first step
    trains all three parts; validation scores and the source | warped | output | target grid."""
    from torchvision.models.vgg import cfgs, make_layers

    # VGG-19's feature layers alone: torchvision's vgg19(weights=None) also initialises a 120 M
    # parameter classifier (3 s), and vgg19_features(None) is tested with Style-A
    monkeypatch.setattr("stylization.styletalk.pirender_stage.vgg19_features", lambda weights: make_layers(cfgs["E"]))
    cfg = compose_train(overrides(corpus, tmp_path / "run", 1, [
        "stage.warp_steps=0", "stage.perceptual_weights=null", "stage.perceptual_scales=2",
        "stage.loss.warp_perceptual=2.5", "stage.loss.final_perceptual=4.0", "stage.loss.final_l1=0"]))
    trainer, record = train(cfg)
    assert all(record[0]["grads"].values()) and {"warp_perceptual", "final_perceptual", "warp_l1"} <= record[0]["logs"]
    batch = next(iter(torch.utils.data.DataLoader(trainer.val_set, 2)))
    scores = trainer.stage.validation_step(batch, trainer.ctx)
    assert {"psnr", "ssim", "l1", "warp_psnr", "warp_ssim"} <= set(scores)
    assert all(np.isfinite(float(v)) for v in scores.values())
    (grid,) = trainer.stage.visualize(batch, trainer.ctx).values()
    assert grid.shape == (2, 3, 32, 4 * 32) and 0 <= grid.min() and grid.max() <= 1


def test_a_released_checkpoint_starts_the_run(tmp_path):
    """stage.checkpoint: the released layout (net_G_ema) loads into the three parts."""
    official = build_module("pirender")
    torch.save({"net_G_ema": official.state_dict()}, tmp_path / "renderer_checkpoint.pt")
    l1 = ["stage.loss.warp_perceptual=0", "stage.loss.final_perceptual=0", "stage.loss.warp_l1=1",
          "stage.loss.final_l1=1"]
    cfg = compose_train(["stage=pirender", "data.root=/nonexistent", *l1,
                         f"stage.checkpoint={tmp_path / 'renderer_checkpoint.pt'}"])
    modules = PIRenderStage(cfg).build_modules()
    assert sorted(modules) == sorted(PARTS)
    for p in PARTS:
        theirs = getattr(official, p).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in modules[p].state_dict().items())


@pytest.mark.parametrize("override, key", [
    ("stage.warp_steps=-1", "stage.warp_steps"),
    ("stage.betas=[0.5]", "stage.betas"),
    ("stage.loss.warp_l1=0", "stage.loss.warp_perceptual or stage.loss.warp_l1"),
    ("+stage.loss.gan=1.0", "stage.loss"),
    ("stage.source_frame=middle", "stage.source_frame"),
    ("model.image_size=40", "model.image_size"),
    ("model.renderer.mapping_layers=4", "model.renderer.mapping_layers"),
    ("stage.loss.final_perceptual=1.0,stage.perceptual_scales=4", "stage.perceptual_scales"),
])
def test_bad_options_fail_naming_their_key(tmp_path, override, key):
    """The stage checks its options before building anything or reading data (no corpus here)."""
    cfg = compose_train(["stage=pirender", "model=pirender_small", "data.root=/nonexistent", *override.split(",")])
    with pytest.raises(ConfigError, match=key.replace(".", "\\.").replace("[", "\\[")):
        PIRenderStage(cfg)


def test_configs_are_the_released_size_and_the_cpu_recipe():
    """model=pirender builds the released layout; `stage=pirender model=pirender_small` is
    `experiment=pirender_cpu`; without the small model the stage's PIRender values hold."""
    from hydra.utils import instantiate

    paper = compose_train(["stage=pirender", "data.root=/nonexistent"])
    assert (paper.stage.lr, list(paper.stage.betas), paper.stage.warp_steps) == (1e-4, [0.5, 0.999], 200000)
    loss = paper.stage.loss
    assert (loss.warp_perceptual, loss.final_perceptual, paper.model.image_size) == (2.5, 4.0, 256)
    with torch.device("meta"):
        built = instantiate(paper.model.renderer)
        released = build_module("pirender")
    assert [(k, v.shape) for k, v in built.state_dict().items()] == \
        [(k, v.shape) for k, v in released.state_dict().items()]
    by_recipe = compose_train(["experiment=pirender_cpu", "data.root=/nonexistent"])
    by_model = compose_train(["stage=pirender", "model=pirender_small", "data.root=/nonexistent"])
    assert OmegaConf.to_container(by_recipe) == OmegaConf.to_container(by_model)
    assert by_model.model.image_size == 64 and by_model.trainer.max_minutes == 10
    assert not {"loss", "warp_steps"} & set(by_model.model)

"""stage=style_ref_generator (stylization/style_reference/generator_stage.py): the items (Style Reference
Images per speaker, facial maps, label maps, matched references), a missing or wrong stage.mapping, and a
short real training run on a tiny Style Mapping run that validates against the copy baseline and reloads
into what inference needs (the generator and the frozen mapping, from this run alone)."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
import torch
from conftest import FRAME_SIZE, compose_train
from test_style_reference_mapping import TINY

from stylization.data.corpus import Corpus
from stylization.engine.distributed import init_distributed
from stylization.engine.run import build_stage
from stylization.engine.trainer import Trainer
from stylization.errors import ConfigError
from stylization.runs import load_run
from stylization.style_reference.generator_stage import (
    GeneratorPairDataset, StyleRefGeneratorStage, intermediate_style_patterns, render)
from stylization.style_reference.templates import mouth_descriptors, retrieve_style_references

S = FRAME_SIZE  # 32 px: the tiny corpus's frames
TINY_MAPPING = TINY  # the 32 px Style Mapping of tests/test_style_reference_mapping.py
G = "model.generator"
TINY_GENERATOR = [f"model.image_size={S}", f"{G}.base_channels=8", f"{G}.max_channels=16", f"{G}.levels=2",
                  f"{G}.res_blocks=1", f"{G}.pattern_channels=4", f"{G}.key_channels=4", f"{G}.fused_skips=1",
                  "model.discriminator.base_channels=8", "model.discriminator.max_channels=16"]


def trainer_overrides(run_dir, steps: int, **extra) -> list[str]:
    opts = {"max_steps": steps, "max_minutes": "null", "num_workers": 0, "log_every_steps": 1,
            "val_every_steps": steps, "val_batches": 1, "image_every_steps": steps, "checkpoint_every_steps": steps,
            "keep_checkpoints": 0, "device": "cpu", "ema_decay": 0.5, **extra}
    return [f"trainer.run_dir={run_dir}"] + [f"trainer.{k}={v}" for k, v in opts.items()]


def generator_config(root, *extra):
    return compose_train(["stage=style_ref_generator", "model=style_ref_generator_small", f"data.root={root}",
                          *TINY_GENERATOR, *extra])


@pytest.fixture(scope="module")
def mapping_run(tiny_corpus, tmp_path_factory):
    """One training step of a 32 px Style Mapping (no validation): what stage.mapping names."""
    run_dir = tmp_path_factory.mktemp("mapping_run")
    cfg = compose_train(["stage=style_ref_mapping", "model=style_ref_mapping_small", f"data.root={tiny_corpus}",
                         *TINY_MAPPING, "stage.batch_size=2", "stage.pairs=2", "stage.items_per_clip=1",
                         "data.val_split=null", *trainer_overrides(run_dir, 1)])
    os.makedirs(run_dir, exist_ok=True)
    assert Trainer(cfg, build_stage(cfg), init_distributed("cpu")).fit() == 1
    return run_dir


def test_items_carry_the_speakers_style_references(tiny_corpus):
    data = GeneratorPairDataset(tiny_corpus, "train", size=S, targets=3, items_per_clip=2, deterministic=False,
                                seed=0, speakers=None, source_frame="random", skip_damaged=False)
    corpus = Corpus(tiny_corpus)
    assert sorted(data.references) == ["spk_a", "spk_b"] and len(data) == 4 * 2
    for speaker, refs in data.references.items():  # all of the speaker's frames, retrieved by the templates
        clips = corpus.clips("train", [speaker])
        landmarks = np.concatenate([corpus.load_landmarks(r) for r in clips])
        chosen = retrieve_style_references(mouth_descriptors(landmarks))
        n = clips[0].n_frames
        assert list(refs.frames) == [(clips[i // n].id, int(i % n)) for i in chosen]
        assert refs.images.shape == (4, S, S, 3) and refs.images.dtype == np.uint8
        np.testing.assert_allclose(refs.descriptors, mouth_descriptors(landmarks)[chosen])
    item = data[0]
    rec = corpus.by_id[item["clip_id"]]
    assert item["speaker"] == rec.speaker
    assert item["source"].shape == (3, S, S) and item["target"].shape == (3, 3, S, S)
    assert item["facial_map"].shape == (3, 3, S, S) and 0 <= item["facial_map"].min() < item["facial_map"].max() <= 1
    assert item["labels"].shape == (3, S, S) and item["labels"].dtype == torch.uint8 and item["labels"].max() > 0
    assert item["references"].shape == (4, 3, S, S) and item["references"].abs().max() <= 1
    landmarks = corpus.load_landmarks(rec)[item["target_frames"].numpy()]
    np.testing.assert_allclose(item["target_landmarks"].numpy(), landmarks)  # 32 px frames: scale 1
    refs = data.references[rec.speaker]
    assert item["pattern_index"].tolist() == refs.match(landmarks).tolist()
    # the validation set's items do not change with the epoch
    val = GeneratorPairDataset(tiny_corpus, "test", size=S, targets=2, items_per_clip=1, deterministic=True, seed=0,
                               speakers=None, source_frame="random", skip_damaged=False)
    first = val[1]
    val.set_epoch(3)
    assert torch.equal(first["target"], val[1]["target"]) and first["source_frame"] == val[1]["source_frame"]


def test_stage_mapping_is_required(tiny_corpus):
    with pytest.raises(ConfigError, match="stage.mapping must name a style_ref_mapping run") as info:
        StyleRefGeneratorStage(generator_config(tiny_corpus))
    assert "\n" not in str(info.value) and "stage=style_ref_mapping" in str(info.value)
    with pytest.raises(ConfigError, match="model.generator.n_patterns"):  # options are checked before any run is read
        StyleRefGeneratorStage(generator_config(tiny_corpus, f"{G}.n_patterns=3"))


def test_the_stage_trains_validates_and_reloads(tiny_corpus, mapping_run, tmp_path, caplog):
    """Three real steps (L1, LSGAN and L_sp; the discriminator too), a validation with the copy baseline,
    the image grid, and a checkpoint that rebuilds the EMA generator and the frozen mapping on its own."""
    run_dir = tmp_path / "generator"
    cfg = generator_config(tiny_corpus, f"stage.mapping={mapping_run}", "stage.batch_size=2", "stage.targets=2",
                           "stage.items_per_clip=1", *trainer_overrides(run_dir, 3))
    stage, logs = build_stage(cfg), []
    original = stage.training_step
    stage.training_step = lambda batch, ctx: logs.append(original(batch, ctx)) or logs[-1]
    os.makedirs(run_dir, exist_ok=True)
    trainer = Trainer(cfg, stage, init_distributed("cpu"))
    before = {k: {n: p.clone() for n, p in m.named_parameters()} for k, m in trainer.raw_modules.items()}
    with caplog.at_level(logging.INFO, logger="stylization.train"):
        assert trainer.fit() == 3
    assert len(logs) == 3
    assert all({"loss", "l1", "gan", "sp", "d_loss"} <= set(row) and all(math.isfinite(float(v)) for v in row.values())
               for row in logs)
    assert "perceptual" not in logs[0]
    changed = {name: any(not torch.equal(before[name][n], p) for n, p in module.named_parameters())
               for name, module in trainer.raw_modules.items()}
    assert changed == {"generator": True, "discriminator": True, "mapping": False}
    val = [r.getMessage() for r in caplog.records if " val " in r.getMessage()]
    assert len(val) == 1 and all(f"{k}=" in val[0] for k in ("psnr", "copy_psnr", "copy_l1", "matched_psnr", "sp"))

    batch = next(iter(torch.utils.data.DataLoader(trainer.val_set, 2)))
    scores = trainer.stage.validation_step(batch, trainer.ctx)
    copy, real = (batch["source"].repeat_interleave(2, 0) + 1) / 2, (batch["target"].flatten(0, 1) + 1) / 2
    assert float(scores["copy_l1"]) == pytest.approx(float((copy - real).abs().mean()))
    assert all(math.isfinite(float(v)) for v in scores.values())
    (grid,) = trainer.stage.visualize(batch, trainer.ctx).values()
    assert grid.shape == (4, 3, S, 8 * S) and 0 <= grid.min() and grid.max() <= 1

    # the run alone rebuilds what inference needs: the frozen mapping (the mapping run's) and the EMA generator
    run = load_run(run_dir)
    assert (run.step, run.stage) == (3, "style_ref_generator")
    assert run.module_names == ["discriminator", "generator", "mapping"]
    assert run.config.model.mapping_image_size == S
    mapping = run.module("mapping", run.config.model.mapping)
    generator = run.module("generator", run.config.model.generator)
    source_run = load_run(mapping_run)
    assert all(torch.equal(v, source_run.weights["mapping"][k]) for k, v in mapping.state_dict().items())
    with torch.no_grad():
        isp = intermediate_style_patterns(mapping, batch["source"], batch["references"], S)
        frames = render(generator, batch["source"], batch["facial_map"], isp)
        expected = trainer.ema["generator"].shadow(batch["source"].repeat_interleave(2, 0),
                                                   batch["facial_map"].flatten(0, 1), isp.repeat_interleave(2, 0))
    assert isp.shape == (2, 4, 3, S, S) and frames.shape == (2, 2, 3, S, S)
    assert torch.equal(frames.flatten(0, 1), expected)

    with pytest.raises(ConfigError, match="must be a style_ref_mapping run"):  # a run of another stage
        StyleRefGeneratorStage(generator_config(tiny_corpus, f"stage.mapping={run_dir}"))


def test_bisenet_parsing_for_the_style_aware_loss(tiny_corpus, mapping_run, tmp_path):
    """stage.bisenet=FILE: Eq. 3's weights come from BiSeNet's parsing of the target frames (face-parsing.
    PyTorch's convention: 512², ImageNet statistics, argmax, nearest back to the frame size)."""
    import torch.nn.functional as F

    from stylization.constants import IMAGENET_MEAN, IMAGENET_STD
    from stylization.style_a.bisenet import BiSeNet
    from stylization.style_reference.generator_stage import bisenet_labels

    torch.manual_seed(0)
    parser = BiSeNet(19).eval()
    torch.save(parser.state_dict(), tmp_path / "faceparsing.pth")
    frames = torch.rand(1, 3, S, S) * 2 - 1
    labels = bisenet_labels(parser, frames)
    with torch.no_grad():
        x = F.interpolate((frames + 1) / 2, size=(512, 512), mode="bilinear", align_corners=False)
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        full = parser(x)[0].argmax(1)
    assert labels.shape == (1, S, S) and labels.dtype == torch.long
    assert torch.equal(labels, full[:, ::512 // S, ::512 // S])  # nearest: every 16th label of the 512² map
    cfg = generator_config(tiny_corpus, f"stage.mapping={mapping_run}", f"stage.bisenet={tmp_path / 'faceparsing.pth'}",
                           *trainer_overrides(tmp_path / "gen", 1))
    stage = StyleRefGeneratorStage(cfg)
    assert stage.parser is not None and not any(p.requires_grad for p in stage.parser.parameters())

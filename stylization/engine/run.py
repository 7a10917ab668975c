"""``python train.py``: build the stage named in the config and run the trainer."""

from __future__ import annotations

import logging
import os

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from stylization.engine.distributed import broadcast_object, init_distributed, shutdown_distributed, wait_for_all
from stylization.engine.stage import TrainingStage
from stylization.errors import ConfigError

log = logging.getLogger("stylization.train")


def setup_logging(run_dir: str, is_main: bool) -> None:
    """Rank 0 logs INFO to the console and ``run_dir/train.log``; other ranks only warnings."""
    root = logging.getLogger()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    if is_main:
        handler = logging.FileHandler(os.path.join(run_dir, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def build_stage(cfg: DictConfig) -> TrainingStage:
    target = cfg.stage.get("_target_")
    if not target:
        raise ConfigError("the stage config has no _target_ naming its TrainingStage class")
    cls = get_class(target)
    if not issubclass(cls, TrainingStage):
        raise ConfigError(f"stage._target_={target} is not a TrainingStage")
    return cls(cfg)


def run_training(cfg: DictConfig) -> int:
    """Train ``cfg.stage`` into ``cfg.trainer.run_dir``; returns the final step."""
    from stylization.engine.trainer import Trainer

    if cfg.get("model") is None:
        raise ConfigError("no model config: train.yaml selects configs/model/<stage>.yaml; pass model=NAME")
    env = init_distributed(str(cfg.trainer.device))
    try:
        # `now` resolves per process (and per node clock); every rank uses rank 0's run directory.
        # Every rank creates it (idempotent); only rank 0 writes into it.
        run_dir = broadcast_object(os.path.abspath(str(cfg.trainer.run_dir)), env)
        cfg.trainer.run_dir = run_dir
        os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
        setup_logging(run_dir, env.is_main)
        if env.is_main:
            with open(os.path.join(run_dir, "config.yaml"), "w") as f:
                f.write(OmegaConf.to_yaml(cfg, resolve=True))
            log.info("run directory %s (world size %d, nodes %d, device %s)", run_dir, env.world_size, env.nodes,
                     env.device)
        stage = build_stage(cfg)
        trainer = Trainer(cfg, stage, env)
        step = trainer.fit()
        wait_for_all(env)
        if env.is_main:
            log.info("finished at step %d; checkpoints in %s", step, os.path.join(run_dir, "checkpoints"))
        return step
    finally:
        shutdown_distributed()

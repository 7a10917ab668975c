"""Train one stage: ``python train.py stage=<name> data.root=DIR [overrides]``.

Multi-GPU: ``torchrun --nproc_per_node=N train.py stage=<name> ...``.
``python train.py --cfg job stage=<name>`` prints the resolved config.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli
    from stylization.engine.run import run_training

    run_cli(lambda: run_training(cfg))


if __name__ == "__main__":
    main()

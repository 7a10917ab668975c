"""Another project's 3DMM .mat + its speech -> one clip of a processed-clip corpus:
``python scripts/import_mat.py mat=FILE.mat audio=FILE out=DIR [fps=30] [video=FILE] [id=NAME] [speaker=NAME]``.

Options: configs/import_mat.yaml (also ``emotion``, ``level``, ``split``, ``texts``, ``face_model``,
``overwrite``, ``phonemes``: StyleTalk's ``<name>_seq.json`` for the clip). Creates DIR and its index.jsonl when absent, else adds the clip (the whole clip
or nothing); prints, last, one JSON object: ``id``, ``n_frames``, ``seconds``, ``video`` (file or
stand_in), ``replaced``. Values are taken as typed (paths and ``texts`` with commas, ``id=001``).
Bad input ends with one ``error:`` line naming the file and a non-zero exit.
"""

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VERBATIM_KEYS = ("mat", "audio", "out", "video", "id", "speaker", "texts", "face_model", "phonemes")


def number(cfg: DictConfig, key: str, kind: type):
    """``cfg[key]`` as ``kind``; a :class:`ConfigError` naming the option otherwise."""
    from stylization.errors import ConfigError

    try:
        return kind(cfg[key])
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={cfg[key]!r} is not a {kind.__name__}") from None


def run(cfg: DictConfig) -> None:
    from stylization.preprocess.mat_clips import ImportOptions, import_clip, split_texts

    text = lambda key: None if cfg[key] is None else str(cfg[key])  # noqa: E731
    options = ImportOptions(
        fps=number(cfg, "fps", float), video=text("video"), clip_id=text("id"), speaker=text("speaker"),
        emotion=str(cfg.emotion), level=None if cfg.level is None else number(cfg, "level", int),
        split=str(cfg.split), texts=split_texts(text("texts")), texts_per_clip=number(cfg, "texts_per_clip", int),
        face_model=str(cfg.face_model), overwrite=bool(cfg.overwrite), seed=number(cfg, "seed", int),
        phonemes=text("phonemes"))
    print(json.dumps(import_clip(str(cfg.out), str(cfg.mat), str(cfg.audio), options)))


@hydra.main(version_base="1.3", config_path="../configs", config_name="import_mat")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: run(cfg))


if __name__ == "__main__":
    from stylization.cli import free_text_argv

    sys.argv = free_text_argv(sys.argv, VERBATIM_KEYS)  # before Hydra's parser sees commas or 001
    main()

"""Inference: ``python infer.py image=PHOTO audio=SPEECH text="..." art=ART out=OUT.mp4``.

The emotion comes from a text (Style-E) or from a style clip (``style_clip=VIDEO_OR_COEFFS``:
StyleTalk); ``emotion_source=text|clip`` says which explicitly, and giving both is an error.

``mode=edit video=INPUT style_clip=...`` restyles an existing talking video (SAAS's video-driven
editing) instead.

Photo + speech + emotion text + art picture -> a stylised talking-head video with the speech,
the generated coefficients (``OUT.npy``) and a contact sheet (``OUT_sheet.png``); see
stylization/pipeline.py for the steps and configs/infer.yaml for the options. ``batch=CSV``
renders many tuples. Without ``image`` the motion model runs alone (coefficients + a landmark
preview). Expected mistakes end with one ``error:`` line and exit 1 (2 for usage errors);
warnings go to stderr, progress and results to stdout.

The emotion text is free text, taken as typed: ``text="The person is angry, frowning"`` (commas,
quotes, ``=`` and ``${`` included; :func:`stylization.cli.free_text_argv` quotes it for Hydra),
or ``text_file=PATH`` (a UTF-8 file holding the description).
"""

import sys

import hydra
from omegaconf import DictConfig

FREE_TEXT_KEYS = ("text", "text_file")


def peak_rss_gib() -> float:
    """This process's peak resident memory, GiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def infer(cfg: DictConfig) -> None:
    import logging

    from stylization.engine.distributed import resolve_device
    from stylization.errors import ConfigError, DataError
    from stylization.pipeline import Job, Pipeline, read_batch, read_text_file, run_batch

    log = logging.getLogger("stylization.infer")
    if isinstance(cfg.video, bool):
        raise ConfigError("video= names the talking video that mode=edit restyles; the landmark preview's switch "
                          f"is preview_video={str(cfg.video).lower()}")
    if cfg.batch is None and cfg.audio is None and cfg.video is None:
        raise ConfigError("give audio=SPEECH (and image=, text=, art=), or batch=TUPLES.csv, or mode=edit video=INPUT")
    text = cfg.text
    if cfg.text_file is not None:
        if text is not None:
            raise ConfigError("give the emotion as text=... or text_file=PATH, not both")
        text = read_text_file(str(cfg.text_file))
    rows = read_batch(str(cfg.batch)) if cfg.batch is not None else None
    pipeline = Pipeline(cfg, resolve_device(str(cfg.device)))
    if rows is not None:
        keys = ("art", "art_style", "pose", "style_clip", "emotion_scale", "seed")
        defaults = {k: cfg[k] for k in keys if cfg[k] is not None}
        if text is not None:
            defaults["text"] = text
        done, failures = run_batch(pipeline, rows, defaults)
        print(f"{done} of {len(rows)} rows rendered")
        if failures:
            raise DataError(f"{len(failures)} of {len(rows)} rows failed ({'; '.join(failures)[:500]})", str(cfg.batch))
        return
    job = Job(audio=None if cfg.audio is None else str(cfg.audio), out=str(cfg.out), image=cfg.image, text=text,
              art=cfg.art, art_style=cfg.art_style, pose=cfg.pose, style_clip=cfg.style_clip, video=cfg.video, style_frames=cfg.style_frames, emotion_scale=float(cfg.emotion_scale), seed=int(cfg.seed))
    for path in pipeline.run(job):
        log.info("wrote %s", path)
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in job.timings.items()))
    print(f"peak memory: {peak_rss_gib():.2f} GiB")
    print(f"wrote {job.out}")


@hydra.main(version_base="1.3", config_path="configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: infer(cfg))


if __name__ == "__main__":
    from stylization.cli import free_text_argv

    sys.argv = free_text_argv(sys.argv, FREE_TEXT_KEYS)  # before Hydra's parser sees the commas
    main()

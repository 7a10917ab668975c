"""Evaluate Style-A on a corpus split: ``python scripts/eval_render.py run=RUN data.root=DIR split=test``.

For every clip of the split the source is frame 0 and ``pairs_per_item`` later frames are
rendered from their ground-truth 73×27 coefficient windows in one art style (styles cycle over
clips; the art code comes from a reference picture of the style). Frames are compared with the
corpus's stylised ground truth at the model's output size, images in [0, 1]:

* ``ssim``, ``psnr``, ``l1`` — the trained model;
* ``init_ssim``, ``init_psnr`` — the same model before training (the stage's initialisation
  with ``seed``: random, or the official weights it was configured to load);
* ``still_ssim``, ``still_psnr`` — the trained model driven by the source frame's own
  coefficients for every target: the source passed through with no motion;
* ``styled_source_ssim``, ``styled_source_psnr`` — the corpus's stylised source frame itself: a
  perfect stylisation with no motion (an oracle; only corpora with stylised frames have it);
* ``mouth_psnr``, ``still_mouth_psnr``, ``styled_source_mouth_psnr`` — PSNR inside the target's
  mouth box (landmarks 48-67, enlarged 1.5 times): does the mouth follow the coefficients?
* ``mouth_motion_corr``, ``mouth_motion_gain`` — the part of each item's mouth that changes over its
  target frames (pixels of one box, the mean of the frames' boxes, minus their mean over the frames):
  the correlation of the model's with the target's (0: no relation; 1: it moves as the target
  does) and the ratio of their RMS (0: a still mouth). A model that ignores the window scores 0, 0.

It writes a grid (rows: source | art | target | model | untrained | still), a mouth grid next
to it (``*_mouth.png``: per item, the enlarged mouths of its target frames, left to right, in
three rows: target, model, still) and prints, as its last line, one JSON object with those keys
(frame means) plus ``frames``, ``items`` and the two grid paths.
"""

import json
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def evaluate(cfg: DictConfig) -> dict:
    import torch
    from omegaconf import OmegaConf
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from stylization.engine.distributed import resolve_device
    from stylization.metrics.image import psnr, ssim
    from stylization.metrics.mouth import box_psnr, motion_scores, motion_sums, mouth_boxes, mouth_changes
    from stylization.runs import STYLE_A_HINT, load_run, style_a_renderer_from_run
    from stylization.style_a.stage import exstyle_codes, make_renderer, render_dataset, renderer_modules

    device = resolve_device(str(cfg.device))
    run = load_run(str(cfg.run), use_ema=bool(cfg.use_ema), hint=STYLE_A_HINT)
    model = style_a_renderer_from_run(run).to(device)
    run_cfg = run.config
    run_cfg.data = OmegaConf.merge(run_cfg.data, cfg.data)
    run_cfg.stage.pairs_per_item, run_cfg.stage.frames_per_item = int(cfg.pairs_per_item), 1
    run_cfg.stage.items_per_clip = int(cfg.items_per_clip)
    run_cfg.stage.targets = "corpus"  # the ground truth is the corpus's stylised frames, whatever trained the model
    run_cfg.stage.source_frame = "first"  # what the deterministic order uses anyway: frame 0
    torch.manual_seed(int(cfg.seed))
    initial = make_renderer(renderer_modules(run_cfg), float(run_cfg.stage.degree)).eval().to(device)
    dataset = render_dataset(run_cfg, str(cfg.split), deterministic=True)
    exstyle = exstyle_codes(run_cfg, dataset.styles)
    if cfg.max_items is not None:
        dataset = Subset(dataset, range(min(int(cfg.max_items), len(dataset))))

    sums = {k: 0.0 for k in ("ssim", "psnr", "l1", "init_ssim", "init_psnr", "still_ssim", "still_psnr",
                             "styled_source_ssim", "styled_source_psnr", "mouth_psnr", "still_mouth_psnr",
                             "styled_source_mouth_psnr")}
    frames, rows, mouth_rows = 0, [], []
    motion = [0.0, 0.0, 0.0]  # sums of the mouth changes' products: model·target, model², target²
    loader = DataLoader(dataset, batch_size=int(cfg.batch_items), num_workers=0)
    unit = lambda x: ((x.float().clamp(-1, 1) + 1) / 2)  # noqa: E731
    with torch.no_grad():
        for batch in tqdm(loader, desc="eval_render", unit="batch"):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            b, k = batch["semantic"].shape[:2]
            real = unit(batch["target"].flatten(0, 2))
            windows = batch["semantic"].flatten(0, 2)
            still_windows = batch["source_semantic"].repeat_interleave(k, 0)
            keypoints = batch["target_keypoints"].flatten(0, 2)
            still_keypoints = batch["source_keypoints"].repeat_interleave(k, 0)
            exstyle_z = None if exstyle is None else exstyle.to(device)[batch["style_index"]]
            outputs = {}
            for prefix, renderer, drive, kp in (("", model, windows, keypoints), ("init_", initial, windows, keypoints),
                                                ("still_", model, still_windows, still_keypoints)):
                content, identity, art = renderer.encode_inputs(batch, exstyle_z)
                fake = unit(renderer(content, identity, art, drive, repeats=k, keypoints=kp)["image"])
                outputs[prefix] = fake
                sums[prefix + "ssim"] += float(ssim(fake, real).sum())
                sums[prefix + "psnr"] += float(psnr(fake, real).sum())
            sums["l1"] += float((outputs[""] - real).abs().flatten(1).mean(1).sum())
            styled = unit(batch["styled_source"]).repeat_interleave(k, 0)
            sums["styled_source_ssim"] += float(ssim(styled, real).sum())
            sums["styled_source_psnr"] += float(psnr(styled, real).sum())
            boxes = mouth_boxes(batch["target_landmarks"].flatten(0, 2), real.shape[-1]).tolist()
            for prefix, fake in (("", outputs[""]), ("still_", outputs["still_"]), ("styled_source_", styled)):
                sums[prefix + "mouth_psnr"] += sum(float(v) for v in box_psnr(fake, real, boxes))
            for i in range(b):
                item = motion_sums(*mouth_changes(outputs[""], real, boxes, range(i * k, i * k + k)))
                motion = [total + value for total, value in zip(motion, item)]
            frames += real.shape[0]
            size = real.shape[-1]
            up = lambda x: torch.nn.functional.interpolate(unit(x), size=(size, size), mode="bilinear")  # noqa: E731
            for i in range(b):
                if len(mouth_rows) < int(cfg.grid_items):
                    mouth_rows.append(mouth_strip(real, outputs[""], outputs["still_"], boxes, range(i * k, i * k + k)))
                if len(rows) < int(cfg.grid_items):
                    j = i * k + k // 2
                    rows.append(torch.cat([up(batch["source"][i:i + 1])[0], up(batch["art"][i:i + 1])[0], real[j],
                                           outputs[""][j], outputs["init_"][j], outputs["still_"][j]], dim=-1))
    result = {key: round(value / max(frames, 1), 4) for key, value in sums.items()}
    corr, gain = motion_scores(*motion)
    result["mouth_motion_corr"], result["mouth_motion_gain"] = round(corr, 4), round(gain, 4)
    result.update(frames=frames, items=len(dataset))
    run_dir = str(cfg.run) if os.path.isdir(str(cfg.run)) else os.path.dirname(str(cfg.run))
    grid_path = str(cfg.grid) if cfg.grid else os.path.join(run_dir, f"eval_render_{cfg.split}.png")
    write_png(grid_path, torch.cat(rows, dim=-2))
    mouth_path = os.path.splitext(grid_path)[0] + "_mouth.png"
    write_png(mouth_path, torch.cat(mouth_rows, dim=-2))
    result.update(grid=grid_path, mouth_grid=mouth_path)
    return result


def mouth_strip(real, model, still, boxes, frames, zoom: int = 4):
    """The mouths of one item's target frames, enlarged: target | model | still, frames left to right.

    real, model, still [N, 3, S, S] in [0, 1]; boxes [N] mouth boxes (x0, y0, x1, y1); frames: indices.
    Every crop is a square of a quarter of the frame side, centred on its box; returns
    [3, 3·(S/4·zoom + 2), len(frames)·(S/4·zoom + 2)]."""
    import torch
    import torch.nn.functional as F

    size = real.shape[-1]
    side = size // 4
    columns = []
    for j in frames:
        x0, y0, x1, y1 = boxes[j]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        left, top = min(max(cx - side // 2, 0), size - side), min(max(cy - side // 2, 0), size - side)
        crops = [F.interpolate(img[j:j + 1, :, top:top + side, left:left + side], scale_factor=zoom, mode="nearest")[0]
                 for img in (real, model, still)]
        columns.append(F.pad(torch.cat([F.pad(c, (0, 0, 0, 2), value=1.0) for c in crops], dim=-2), (0, 2), value=1.0))
    return torch.cat(columns, dim=-1)


def write_png(path: str, image) -> None:
    """[3, H, W] in [0, 1] -> PNG, written atomically."""
    import cv2
    import numpy as np

    array = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    tmp = path + ".tmp.png"
    cv2.imwrite(tmp, cv2.cvtColor(array, cv2.COLOR_RGB2BGR))
    os.replace(tmp, path)


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval_render")
def main(cfg: DictConfig) -> None:
    from stylization.cli import run_cli

    run_cli(lambda: print(json.dumps(evaluate(cfg))))


if __name__ == "__main__":
    main()

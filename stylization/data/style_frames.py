"""Reading a character's style reference frames: a folder of pictures or a video.

``style_frames=`` (infer.py) and ``references=`` (scripts/style_transfer.py) take either

* a **folder** of pictures (.png, .jpg, .jpeg, .bmp, .webp; read in file-name order, any sizes), or
* a **video** file (decoded at 25 fps; its sound, when it has one, is the character's voice).

Each frame must show the character's face; the face and coefficient steps run on every frame.
"""

from __future__ import annotations

import os

import numpy as np

from stylization.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MIN_FRAMES = 4  # the four key motion templates each need a frame


def read_style_frames(path: str | os.PathLike, max_frames: int | None = None) -> list[np.ndarray]:
    """A folder of pictures or a video -> RGB uint8 frames (a list: pictures may differ in size).

    Raises :class:`DataError` naming the path when it is missing, holds no readable picture, a
    picture is unreadable, or there are fewer than :data:`MIN_FRAMES` frames.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise DataError(f"no pictures ({', '.join(IMAGE_EXTENSIONS)}) in the style frames folder", path)
        frames = []
        for name in names[:max_frames]:
            file = os.path.join(path, name)
            try:
                with Image.open(file) as im:
                    frames.append(np.asarray(im.convert("RGB")))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"not a readable picture ({exc.__class__.__name__})", file) from None
    elif os.path.isfile(path):
        from stylization.data.video import read_video

        frames = list(read_video(path, max_frames=max_frames))
    else:
        raise DataError("style frames not found (a folder of pictures or a video)", path)
    if len(frames) < MIN_FRAMES:
        raise DataError(f"{len(frames)} style frames; at least {MIN_FRAMES} are needed (one per key motion template)",
                        path)
    return frames

"""Movie files written one frame at a time: memory holds one frame, never the whole movie.

- GIF through Pillow alone. Pillow's own animated-GIF writer (`save_all=True`) keeps every
  frame until it closes, so this one writes the file's blocks itself with Pillow's documented
  per-frame helpers (GifImagePlugin.getheader / getdata): the header and one palette from the
  first frame, then each frame quantized to that palette and appended.
- MP4 (H.264) through the imageio-ffmpeg package (the `animate` extra), which pipes each
  frame to the ffmpeg binary its wheel ships. Without it, a clear error suggests .gif.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import GifImagePlugin, Image

FORMATS = (".gif", ".mp4")
GIF_COLORS = 64  # the palette: white, two token colours, text and their anti-aliased blends
MP4_PACKAGE = "imageio_ffmpeg"


class MovieWriter(Protocol):
    def append(self, rgb: np.ndarray) -> None: ...  # (H, W, 3) uint8

    def close(self) -> None: ...


class GifWriter:
    """An animated GIF, looping, `fps` frames per second, one palette for every frame."""

    def __init__(self, path: Path, fps: float):
        self.path, self.duration_ms = path, int(round(1000 / fps))
        self._file = open(path, "wb")
        self._palette: Image.Image | None = None
        self.frames = 0

    def append(self, rgb: np.ndarray) -> None:
        image = Image.fromarray(rgb, "RGB")
        if self._palette is None:
            self._palette = image.quantize(colors=GIF_COLORS, dither=Image.Dither.NONE)
            header, _ = GifImagePlugin.getheader(self._palette, info={"loop": 0, "duration": self.duration_ms})
            self._file.writelines(header)
            frame = self._palette
        else:
            frame = image.quantize(palette=self._palette, dither=Image.Dither.NONE)
        self._file.writelines(GifImagePlugin.getdata(frame, duration=self.duration_ms))
        self.frames += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.write(b";")  # the GIF trailer
            self._file.close()


class Mp4Writer:
    """An H.264 MP4 through imageio-ffmpeg's frame generator (ffmpeg reads each frame from a pipe)."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self._gen = None
        self.frames = 0

    def append(self, rgb: np.ndarray) -> None:
        if self._gen is None:
            import imageio_ffmpeg  # optional (the `animate` extra): only an .mp4 needs it

            height, width = rgb.shape[:2]
            self._gen = imageio_ffmpeg.write_frames(str(self.path), (width, height), fps=self.fps,
                                                    codec="libx264", quality=7)
            self._gen.send(None)  # starts ffmpeg
        self._gen.send(np.ascontiguousarray(rgb).tobytes())
        self.frames += 1

    def close(self) -> None:
        if self._gen is not None:
            self._gen.close()  # ffmpeg finishes the file
            self._gen = None


def check_format(path: Path) -> None:
    """Fail before any work for a suffix no writer takes, or an MP4 without its package."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: unknown movie format {suffix or '(none)'!r}: use one of {', '.join(FORMATS)}")
    if suffix == ".mp4" and importlib.util.find_spec(MP4_PACKAGE) is None:
        raise RuntimeError(f"{path}: writing MP4 needs the imageio-ffmpeg package, which is not installed "
                           f"(pip install 'dead-token-harness[animate]'); or write a GIF: --out {path.with_suffix('.gif')}")


def open_writer(path: Path, fps: float) -> MovieWriter:
    """The writer for `path`'s suffix (.gif or .mp4)."""
    check_format(path)
    return GifWriter(path, fps) if path.suffix.lower() == ".gif" else Mp4Writer(path, fps)

"""Stream the frames of any image, folder of images or video, one at a time (flat memory).

:func:`open_media` takes a path and returns a :class:`Media`: iterating it yields :class:`Frame`
records ``(index, timestamp, image)`` in order, decoding one frame at a time, so a 10,000-frame video
never sits in memory. ``index`` counts decoded frames from 0; ``timestamp`` is the frame's
presentation time in seconds from the start of the stream, read from the container (PyAV), or NaN
for still images. A folder is read in natural name order (``2.png`` before ``10.png``), images with
the suffixes of :data:`au_lib.data.sources.IMAGE_SUFFIXES`; a file that is not a readable image
ends the run with an error naming it (it is never skipped silently).

Errors name the path: :class:`FileNotFoundError` for a missing path, :class:`MediaError` for a
file that is neither a readable image nor a readable video, or a folder without images.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .sources import IMAGE_SUFFIXES, UnreadableFrame, decode_image_bytes

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif")


class MediaError(ValueError):
    """A path that cannot be read as an image, a folder of images or a video (the message names it)."""


@dataclass
class Frame:
    """One decoded frame: ``index`` (0-based, decode order), ``timestamp`` (seconds from the stream
    start; NaN for still images), ``image`` (H, W, 3) uint8 RGB and ``name`` (its file, for folders)."""

    index: int
    timestamp: float
    image: np.ndarray
    name: str = ""


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


class Media:
    """A streamed image, image folder or video; see the module docstring.

    Attributes:
        path: the path given. kind: ``"image"``, ``"folder"`` or ``"video"``.
        fps: the video's average frame rate (NaN for images). frame_count_hint: the container's
            frame count (videos; may be 0 or wrong: the decoded count is what counts), the number of
            files otherwise.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file or folder")
        self.fps = float("nan")
        if self.path.is_dir():
            self.kind = "folder"
            self.files = sorted((p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                                key=_natural_key)
            if not self.files:
                raise MediaError(f"{self.path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.frame_count_hint = len(self.files)
        elif not self.path.is_file():
            raise MediaError(f"{self.path}: not a regular file or folder")
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self.kind, self.files, self.frame_count_hint = "image", [self.path], 1
        else:
            self.kind, self.files = "video", []
            self.frame_count_hint, self.fps = self._probe()

    def _probe(self) -> tuple[int, float]:
        import av

        try:
            with av.open(str(self.path)) as c:
                if not c.streams.video:
                    raise MediaError(f"{self.path}: no video stream (streams: "
                                     f"{', '.join(s.type for s in c.streams) or 'none'})")
                s = c.streams.video[0]
                rate = s.average_rate or s.guessed_rate or s.base_rate
                return int(s.frames or 0), float(rate) if rate else float("nan")
        except MediaError:
            raise
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise MediaError(f"{self.path}: not a readable video or image ({type(exc).__name__}: {exc})") from None

    def __repr__(self) -> str:
        return f"Media({str(self.path)!r}, kind={self.kind}, frames~{self.frame_count_hint}, fps={self.fps:.3g})"

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames()
            return
        for k, p in enumerate(self.files):
            try:
                img = decode_image_bytes(p.read_bytes(), str(p))
            except (UnreadableFrame, OSError) as exc:
                raise MediaError(str(exc) if str(p) in str(exc) else f"{p}: {exc}") from None
            yield Frame(k, float("nan"), img, p.name)

    def _video_frames(self) -> Iterator[Frame]:
        """Decode packet by packet; the timestamp is ``(pts - start) * time_base`` of each frame (decode
        order and frame rate when the stream has no timestamps)."""
        import av

        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"{self.path}: cannot open video ({type(exc).__name__}: {exc})") from None
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            start = stream.start_time if stream.start_time is not None else 0
            k = 0
            try:
                for frame in container.decode(stream):
                    if frame.pts is not None and tb is not None:
                        t = float((frame.pts - start) * tb)
                    else:
                        t = k / self.fps if math.isfinite(self.fps) and self.fps > 0 else float("nan")
                    yield Frame(k, t, frame.to_ndarray(format="rgb24"))
                    k += 1
            except av.error.FFmpegError as exc:
                raise MediaError(f"{self.path}: decoding failed after {k} frames ({type(exc).__name__}: {exc})") from None
        if k == 0:
            raise MediaError(f"{self.path}: no decodable video frames")


def open_media(path: str | Path) -> Media:
    """A :class:`Media` for ``path`` (image, folder of images, or video); errors name the path."""
    return Media(path)


def write_video(path: str | Path, frames: Iterator[np.ndarray], fps: float = 25.0, codec: str = "mpeg4") -> Path:
    """Encode (H, W, 3) uint8 frames (streamed) into a video with PyAV; returns the path.

    For tests and benchmarks (synthetic clips); ``mpeg4`` needs no external encoder library.
    """
    import fractions

    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as c:
        stream = None
        for img in frames:
            if stream is None:
                stream = c.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "yuv420p"
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            c.mux(packet)
    return path


__all__ = ["Frame", "Media", "MediaError", "VIDEO_SUFFIXES", "open_media", "write_video"]

"""Frame sources: where the pixels of one sequence come from (image folder, zip archive, video).

Every source is a small picklable dataclass with ``iter_frames(frames)`` yielding
``(frame, image_or_error)`` for the requested **1-based label frame numbers** in increasing order:
``image`` is H x W x 3 uint8 RGB; a frame that cannot be read yields an exception (never skipped
silently); a frame the source does not have yields :class:`MissingFrame`.

Video frame numbering: DISFA and BP4D label files count frames from 1, so **label frame k is the
decoded frame with index k - 1** (0-based decode order, PyAV). Decoding is sequential and
frame-exact (every frame is decoded; no seeking by timestamp).
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class MissingFrame(LookupError):
    """The source has no image for a label frame."""


class UnreadableFrame(OSError):
    """An image or video frame exists but cannot be decoded."""


def decode_image_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode an encoded image to H x W x 3 uint8 RGB; :class:`UnreadableFrame` naming ``name`` if corrupt."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UnreadableFrame(f"{name}: unreadable image ({exc})") from None


def frame_number_from_name(name: str) -> int | None:
    """``'0712.jpg'`` or ``'712.jpg'`` -> 712; names without a numeric stem -> None."""
    stem = Path(name).stem
    m = re.fullmatch(r"0*(\d+)", stem)
    return int(m.group(1)) if m else None


def index_image_names(names: Sequence[str], where: str = "") -> dict[int, str]:
    """Map frame number -> name for image files named by their frame (zero-padded or not).

    Two files with the same number (e.g. ``0712.jpg`` and ``712.jpg``) are an error.
    """
    out: dict[int, str] = {}
    for n in names:
        if Path(n).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        k = frame_number_from_name(Path(n).name)
        if k is None:
            continue
        if k in out:
            raise ValueError(f"{where}: two images for frame {k}: {Path(out[k]).name} and {Path(n).name}")
        out[k] = n
    return out


@dataclass
class ImageFolderSource:
    """Frames stored as images named by their frame number in one folder."""

    folder: str
    paths: dict[int, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, folder: str | Path) -> "ImageFolderSource":
        folder = Path(folder)
        names = [str(p) for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        return cls(str(folder), index_image_names(names, str(folder)))

    def available(self) -> set[int]:
        return set(self.paths)

    def iter_frames(self, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray | Exception]]:
        for f in frames:
            p = self.paths.get(int(f))
            if p is None:
                yield f, MissingFrame(f"{self.folder}: no image for frame {f}")
                continue
            try:
                data = Path(p).read_bytes()
            except OSError as exc:
                yield f, UnreadableFrame(f"{p}: {exc}")
                continue
            try:
                yield f, decode_image_bytes(data, p)
            except UnreadableFrame as exc:
                yield f, exc


@dataclass
class ZipImageSource:
    """Frames stored inside a zip archive (BP4D+ ``2D+3D/F001.zip`` holds ``F001/T1/*.jpg``)."""

    archive: str
    members: dict[int, str] = field(default_factory=dict)

    @classmethod
    def scan(cls, archive: str | Path, prefix: str) -> "ZipImageSource":
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.startswith(prefix) and "/" not in n[len(prefix):]]
        return cls(str(archive), index_image_names(names, f"{archive}:{prefix}"))

    def available(self) -> set[int]:
        return set(self.members)

    def iter_frames(self, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray | Exception]]:
        with zipfile.ZipFile(self.archive) as zf:
            for f in frames:
                m = self.members.get(int(f))
                if m is None:
                    yield f, MissingFrame(f"{self.archive}: no image for frame {f}")
                    continue
                try:
                    data = zf.read(m)
                    yield f, decode_image_bytes(data, f"{self.archive}:{m}")
                except (UnreadableFrame, zipfile.BadZipFile, OSError) as exc:
                    yield f, UnreadableFrame(f"{self.archive}:{m}: {exc}")


def video_frame_count(path: str | Path) -> int:
    """Number of frames by decoding the whole video (exact; container metadata can be wrong)."""
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@dataclass
class VideoSource:
    """Frames of a video file, decoded in order with PyAV: label frame k = decoded index k - 1."""

    path: str
    count_all: bool = False  # keep decoding after the last wanted frame to count the video's frames
    decoded_count: int | None = None  # set after a full pass (count_all=True)

    def iter_frames(self, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray | Exception]]:
        import av

        wanted = sorted(int(f) for f in frames)
        if not wanted:
            return
        try:
            container = av.open(self.path)
        except (av.error.FFmpegError, OSError) as exc:
            err = UnreadableFrame(f"{self.path}: cannot open video ({exc})")
            for f in wanted:
                yield f, err
            return
        i = 0  # next wanted position
        count = 0
        with container:
            try:
                for index, frame in enumerate(container.decode(video=0)):
                    count = index + 1
                    label_frame = index + 1
                    if i < len(wanted) and label_frame == wanted[i]:
                        yield label_frame, frame.to_ndarray(format="rgb24")
                        i += 1
                    if i == len(wanted) and not self.count_all:
                        return
                self.decoded_count = count
            except av.error.FFmpegError as exc:
                for f in wanted[i:]:
                    yield f, UnreadableFrame(f"{self.path}: decoding stopped before frame {f} ({exc})")
                return
        for f in wanted[i:]:
            yield f, MissingFrame(f"{self.path}: video has {count} frames, no frame for label {f} "
                                  f"(label frame k = decoded frame k-1)")


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """Decode a whole video to (T, H, W, 3) uint8 RGB (frame-exact, in decode order)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    out = []
    with av.open(str(path)) as c:
        for fr in c.decode(video=0):
            out.append(fr.to_ndarray(format="rgb24"))
            if max_frames is not None and len(out) >= max_frames:
                break
    if not out:
        raise UnreadableFrame(f"{path}: no decodable video frames")
    return np.stack(out)

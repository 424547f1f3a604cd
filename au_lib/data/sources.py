"""Frame sources: where the pixels of one sequence come from (image folder, zip archive, video).

Every source is a small picklable dataclass with ``iter_frames(frames)`` yielding
``(frame, image_or_error)`` for the requested **1-based label frame numbers** in increasing order:
``image`` is H x W x 3 uint8 RGB; a frame that cannot be read yields an exception (never skipped
silently); a frame the source does not have yields :class:`MissingFrame`.

Video frame numbering: DISFA and BP4D label files count frames from 1, so **label frame k is the
video frame with index k - 1**, and that index comes from the frame's **timestamp**
(``round((pts - start) * time_base * frame_rate)``), not from how many frames were decoded before
it: a damaged or dropped packet leaves a gap (reported: the label frames in it yield
:class:`MissingFrame` / :class:`UnreadableFrame` naming the timestamp) instead of shifting every later
label onto the wrong image. Decoding is sequential, packet by packet; a packet that fails to decode
costs its own frame only. Frames without timestamps fall back to decode order (recorded in
``VideoSource.numbering``).
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
MAX_FRAME_PIXELS = 40_000_000
"""Largest image (width x height) a frame may be: the header is checked before decoding, so a
damaged or hostile header claiming, say, 20000 x 20000 px is a failed frame, not a 1.2 GB allocation."""


class MissingFrame(LookupError):
    """The source has no image for a label frame."""


class UnreadableFrame(OSError):
    """An image or video frame exists but cannot be decoded."""


def decode_image_bytes(data: bytes, name: str) -> np.ndarray:
    """Decode an encoded image to H x W x 3 uint8 RGB; :class:`UnreadableFrame` naming ``name`` if it is
    corrupt, empty or claims more than :data:`MAX_FRAME_PIXELS` pixels."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UnreadableFrame(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_FRAME_PIXELS or w < 1 or h < 1:
                raise UnreadableFrame(f"{name}: image header claims {w}x{h} px (limit "
                                      f"{MAX_FRAME_PIXELS} px); damaged or not a video frame")
            im.load()
            return np.asarray(im.convert("RGB"))
    except UnreadableFrame:
        raise
    except Image.DecompressionBombError as exc:
        raise UnreadableFrame(f"{name}: image header claims an oversized image ({exc}); damaged or not a "
                              f"video frame") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise UnreadableFrame(f"{name}: unreadable image ({type(exc).__name__}: {exc})") from None


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
    """Frames stored inside a zip archive (BP4D+ ``2D+3D/F001.zip`` holds ``F001/T1/*.jpg``).

    A damaged archive (truncated, not a zip) does not stop a scan: ``error`` records why, and every
    frame asked for yields :class:`UnreadableFrame` naming the archive.
    """

    archive: str
    members: dict[int, str] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def scan(cls, archive: str | Path, prefix: str) -> "ZipImageSource":
        try:
            with zipfile.ZipFile(archive) as zf:
                names = [n for n in zf.namelist() if n.startswith(prefix) and "/" not in n[len(prefix):]]
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            return cls(str(archive), {}, f"not a readable zip archive ({type(exc).__name__}: {exc})")
        return cls(str(archive), index_image_names(names, f"{archive}:{prefix}"))

    def available(self) -> set[int]:
        return set(self.members)

    def iter_frames(self, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray | Exception]]:
        try:
            zf = zipfile.ZipFile(self.archive) if self.error is None else None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            self.error, zf = f"not a readable zip archive ({type(exc).__name__}: {exc})", None
        if zf is None:
            for f in frames:
                yield f, UnreadableFrame(f"{self.archive}: {self.error}")
            return
        with zf:
            for f in frames:
                m = self.members.get(int(f))
                if m is None:
                    yield f, MissingFrame(f"{self.archive}: no image for frame {f}")
                    continue
                try:
                    data = zf.read(m)
                    yield f, decode_image_bytes(data, f"{self.archive}:{m}")
                except UnreadableFrame as exc:
                    yield f, exc
                except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                    yield f, UnreadableFrame(f"{self.archive}:{m}: {type(exc).__name__}: {exc}")


def video_frame_count(path: str | Path) -> int:
    """Number of frames by decoding the whole video (exact; container metadata can be wrong)."""
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@dataclass
class VideoSource:
    """Frames of a video file, numbered by timestamp: label frame k = video frame index k - 1.

    After a pass that reached the end (``count_all=True``) ``decoded_count`` is the video's length in
    frames (last index + 1), ``present_frames`` the label frames that decoded, ``gaps`` the label
    frames within the video that have no decodable image, and ``numbering`` says how frames were
    numbered (``"timestamp"`` or ``"decode order"`` when the stream has no timestamps).
    """

    path: str
    count_all: bool = False  # keep decoding after the last wanted frame to count the video's frames
    decoded_count: int | None = None  # set after a full pass (count_all=True)
    present_frames: set[int] | None = None
    gaps: list[int] = field(default_factory=list)
    numbering: str = "timestamp"

    def iter_frames(self, frames: Sequence[int]) -> Iterator[tuple[int, np.ndarray | Exception]]:
        import av

        wanted = sorted({int(f) for f in frames})
        if not wanted:
            return
        try:
            container = av.open(self.path)
            stream = container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            err = UnreadableFrame(f"{self.path}: cannot open video ({type(exc).__name__}: {exc})")
            for f in wanted:
                yield f, err
            return
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        tb = stream.time_base
        start = stream.start_time
        present: set[int] = set()
        broken: dict[int, str] = {}  # label frame -> why its packet did not decode
        i = 0  # next wanted position
        last = 0  # highest label frame seen so far

        def label_of(pts, fallback: int) -> int:
            if pts is None or tb is None or not rate:
                self.numbering = "decode order"
                return fallback
            t0 = start if start is not None else 0
            return int(round(float((pts - t0) * tb * rate))) + 1

        def flush(upto: int):
            """Yield the wanted frames below ``upto`` that did not decode (gaps or broken packets)."""
            nonlocal i
            while i < len(wanted) and wanted[i] < upto:
                f = wanted[i]
                if f in broken:
                    yield f, UnreadableFrame(f"{self.path}: frame {f}: {broken[f]}")
                else:
                    yield f, MissingFrame(f"{self.path}: no decodable frame with the timestamp of label frame {f} "
                                          f"({(f - 1) / float(rate) if rate else float('nan'):.3f} s): a gap in "
                                          f"the video (damaged or dropped packet)")
                i += 1

        with container:
            try:
                for packet in container.demux(stream):
                    try:
                        decoded = packet.decode()
                    except av.error.FFmpegError as exc:
                        if packet.pts is not None:
                            broken[label_of(packet.pts, last + 1)] = f"damaged packet ({exc})"
                        continue
                    for frame in decoded:
                        label = label_of(frame.pts, last + 1)
                        if label <= last or label < 1:  # repeated or negative timestamp: keep the first
                            continue
                        present.add(label)
                        last = label
                        yield from flush(label)
                        if i < len(wanted) and wanted[i] == label:
                            yield label, frame.to_ndarray(format="rgb24")
                            i += 1
                    if i == len(wanted) and not self.count_all:
                        return
            except av.error.FFmpegError as exc:
                for f in wanted[i:]:
                    yield f, UnreadableFrame(f"{self.path}: decoding stopped before frame {f} ({exc})")
                return
        self.decoded_count = last
        self.present_frames = present
        self.gaps = sorted(set(range(1, last + 1)) - present)
        yield from flush(last + 1)
        for f in wanted[i:]:
            yield f, (UnreadableFrame(f"{self.path}: frame {f}: {broken[f]}") if f in broken else
                      MissingFrame(f"{self.path}: video has {last} frames, no frame for label {f} "
                                   f"(label frame k = video frame k-1 by timestamp)"))


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

"""Use a trained AU classifier on new faces: the detector file and ``detect``.

- :mod:`au_lib.detect.file`: the self-contained detector file (architecture, weights, AU list,
  validation thresholds, preprocessing, training data, provenance); :func:`save_detector`,
  :func:`load_detector`.
- :mod:`au_lib.detect.run`: :func:`detect` (path -> pandas DataFrame, one row per frame) on an image,
  a folder of images or a video, streamed.

Example::

    from au_lib.detect import detect
    table = detect("my_video.mp4", "detector.pt")  # columns: frame, timestamp, face, ..., AU12_p, AU12_c
"""

from .file import Detector, DetectorFileError, load_detector, save_detector, synthau_preprocess
from .run import columns, detect, detect_run, write_table

__all__ = ["Detector", "DetectorFileError", "columns", "detect", "detect_run", "load_detector", "save_detector",
           "synthau_preprocess", "write_table"]

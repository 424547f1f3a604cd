"""nbval settings for the chapters: stable threads and seeds, and what not to compare.

The kernels inherit this process's environment, so the variables set here reach every notebook.
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for key, value in {"AU_CACHE": str(ROOT / ".cache"), "AU_RESULTS": str(ROOT / "book" / "results"),"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MKL_CBWR": "AVX2",
                   "PYTHONHASHSEED": "0", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
                   "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}.items():
    os.environ.setdefault(key, value)

SKIP = ("stderr", "image/svg+xml", "application/papermill.record/image/png",
        "application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json",
        "text/html")


def pytest_collectstart(collector):
    if collector.path is not None and collector.path.suffix == ".ipynb":
        collector.skip_compare += SKIP

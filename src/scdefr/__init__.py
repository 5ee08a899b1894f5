"""scDEFR: single-cell Deep Embedded Fusion Representation clustering.

Organised like scanpy: ``scdefr.io`` reads counts, ``scdefr.pp`` does QC, normalisation and the cell
graph, ``scdefr.tl`` trains the model and clusters, ``scdefr.pl`` plots, ``scdefr.export`` writes the
published files. As in scvi-tools, the network and its losses (``scdefr.nn``), the data layer
(``scdefr.data``), the training plan (``scdefr.plan``) and the user-facing model (``scdefr.model``)
are kept apart; ``scdefr.options`` declares every option once.
"""

from ._progress import settings

__version__ = "0.2.0"

__all__ = ["settings"]

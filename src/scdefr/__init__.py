"""scDEFR: single-cell Deep Embedded Fusion Representation clustering.

Organised like scanpy: ``scdefr.io`` reads counts, ``scdefr.pp`` does QC, normalisation and the cell
graph, ``scdefr.tl`` trains the model and clusters, ``scdefr.pl`` plots, ``scdefr.export`` writes the
published files. The network, the training plan and the user-facing model are kept apart in
``scdefr.nn``, ``scdefr.training`` and ``scdefr.model``.
"""

__version__ = "0.2.0"

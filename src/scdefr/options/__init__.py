"""Every option of every step, declared once.

Each step's options are a frozen dataclass; a field's type (``Literal`` for choices), default, bounds
and one-line help are its only declaration. The command line (``--min-genes``), the Python API
(``pp.qc(adata, min_genes=...)``), the Nextflow schema and ``conf/modules.config`` (checked by
``tests/test_options.py``) all follow it, with the same names. Building a dataclass validates it, so
a bad value stops with one line naming the option before any step runs. Torch-free: the command line
starts without torch.

The declaration and its checks are in ``_option``, the groups and which step takes them in ``_groups``,
the presets in ``_presets``.
"""

from ._groups import (
    COMMAND_OPTIONS,
    MODEL_OPTIONS,
    STEP_OPTIONS,
    ClusterOptions,
    CommonOptions,
    ExportOptions,
    GraphOptions,
    NetworkOptions,
    QCOptions,
    RuntimeOptions,
    SimulateOptions,
    TrainingOptions,
    model_option_names,
)
from ._option import AUTO, PRINTABLE, Options, field_types, kind
from ._presets import PRESETS, preset_values, takes_preset

__all__ = [
    "AUTO",
    "COMMAND_OPTIONS",
    "MODEL_OPTIONS",
    "PRESETS",
    "PRINTABLE",
    "STEP_OPTIONS",
    "ClusterOptions",
    "CommonOptions",
    "ExportOptions",
    "GraphOptions",
    "NetworkOptions",
    "Options",
    "QCOptions",
    "RuntimeOptions",
    "SimulateOptions",
    "TrainingOptions",
    "field_types",
    "kind",
    "model_option_names",
    "preset_values",
    "takes_preset",
]

"""Reading raw counts into AnnData, whatever form they arrive in, and checking they are raw counts.

Supported inputs (the format is taken from the content, not trusted from the extension):

- ``.h5ad`` (also nf-core/scrnaseq's ``*_matrix.h5ad``): counts from ``layers['counts']``, ``X`` or
  ``.raw``, whichever first holds raw counts;
- 10x Genomics ``.h5`` (``filtered_feature_bc_matrix.h5``, v2 and v3);
- a 10x matrix folder (``matrix.mtx[.gz]``, ``features.tsv[.gz]`` or ``genes.tsv[.gz]``,
  ``barcodes.tsv[.gz]``; Cell Ranger and STARsolo layouts);
- ``.csv`` / ``.tsv`` tables (optionally gzipped), cells x genes, or genes x cells with ``transpose``;
- the HDF5 layout of the scDEFR/scDeepCluster papers (``exprs``, ``obs``, ``var``, ``obs_names``,
  ``var_names``);
- the X/Y HDF5 layout of scDeepCluster's and scDCC's example data (``X``, optional ``Y`` labels).

Whatever the source, :func:`read_counts` returns cells x genes with the counts in ``X`` as CSR
float32, the input's ``obs`` and ``var`` columns, and ``uns['scdefr_input']`` saying where the counts
came from. Every failure is a one-line :class:`~scdefr.errors.ScdefrError`.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import anndata as ad
import h5py
import scanpy as sc
from anndata.io import read_elem

from ..errors import SYSTEM_REFUSALS, ScdefrError, system_error
from ._counts import validate_raw_counts
from ._readers import (
    _find_in_folder,
    _read_h5ad_counts,
    _read_mtx_folder,
    _read_paper_h5,
    _read_table,
    _read_xy_h5,
    _tidy,
)

__all__ = ["FORMATS", "detect_format", "read_counts", "read_step_h5ad", "validate_raw_counts"]

logger = logging.getLogger(__name__)

FORMATS = ("h5ad", "10x_h5", "10x_mtx", "csv", "tsv", "paper_h5", "xy_h5")
SUPPORTED = ".h5ad, 10x .h5, 10x matrix folder, .csv/.tsv[.gz], the paper's HDF5 layout or scDeepCluster's X/Y .h5"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GZIP_SIGNATURE = b"\x1f\x8b"


def read_counts(path: str | os.PathLike, *, transpose: bool = False) -> ad.AnnData:
    """Read raw counts from a file or a 10x matrix folder as cells x genes.

    The format is taken from the content, not trusted from the extension (:func:`detect_format`), and
    the counts are checked by :func:`validate_raw_counts`.

    Parameters
    ----------
    path
        An ``.h5ad``, a 10x ``.h5``, a 10x matrix folder, a ``.csv``/``.tsv`` table (optionally
        gzipped), the papers' HDF5 layout or scDeepCluster's X/Y layout.
    transpose
        The table is stored genes x cells (csv/tsv only; other formats carry their orientation).

    Returns
    -------
    anndata.AnnData
        The counts in ``X`` (CSR float32, unique cell ids, duplicate gene names made unique), the
        input's ``obs`` and ``var`` columns, and ``uns['scdefr_input']`` (path, format, where the
        counts came from, notes on what was changed).

    Raises
    ------
    ScdefrError
        The input is missing, of unknown format, corrupt or not raw counts (one line saying which).

    Examples
    --------
    >>> from scdefr import io
    >>> adata = io.read_counts("sample/outs/filtered_feature_bc_matrix.h5")
    >>> table = io.read_counts("counts_genes_by_cells.csv.gz", transpose=True)
    """
    path = Path(path)
    fmt = detect_format(path)
    if transpose and fmt not in ("csv", "tsv"):
        raise ScdefrError(f"--transpose applies to csv/tsv tables only, but {path} is {fmt}")
    logger.info("reading %s (%s)", path, fmt)
    try:
        if fmt == "h5ad":
            adata, source = _read_h5ad_counts(path)
        elif fmt == "10x_h5":
            adata, source = sc.read_10x_h5(path), "10x matrix"
        elif fmt == "10x_mtx":
            adata, source = _read_mtx_folder(path), "10x matrix"
        elif fmt == "paper_h5":
            adata, source = _read_paper_h5(path), "exprs"
        elif fmt == "xy_h5":
            adata, source = _read_xy_h5(path), "X"
        else:
            adata, source = _read_table(path, sep="," if fmt == "csv" else "\t", transpose=transpose), "table"
    except ScdefrError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, UnicodeDecodeError) as exc:
        _raise_if_refused(exc, path)
        raise ScdefrError(f"cannot read {path} as {fmt}: {_one_line(exc)}") from None

    notes = adata.uns.pop("scdefr_notes", [])
    adata, tidy_notes = _tidy(adata, path)
    validate_raw_counts(adata.X, what=f"counts in {path.name} ({source})")
    adata.uns["scdefr_input"] = {"path": str(path), "format": fmt, "counts": source, "notes": [*notes, *tidy_notes]}
    logger.info("read %d cells x %d genes from %s", adata.n_obs, adata.n_vars, source)
    return adata


def read_step_h5ad(
    path: str | os.PathLike, *, require_uns: str | None = None, made_by: str = "", leave_on_disk: tuple[str, ...] = ()
) -> ad.AnnData:
    """Read an ``.h5ad`` that an earlier step wrote, with a one-line error if it is missing, corrupt or foreign.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    require_uns
        The key the producing step leaves in ``uns`` (e.g. ``'scdefr_qc'``); refused without it.
    made_by
        The producing step, named in the message when ``require_uns`` is missing (e.g. ``'scdefr qc'``).
    leave_on_disk
        Matrices the step does not use (``'X'``, ``'layers/<name>'``): they are not read, and
        ``scdefr._files.h5ad.write_h5ad(..., carry=...)`` copies them into the step's output.

    Returns
    -------
    anndata.AnnData
        The file's content, less the matrices in ``leave_on_disk``.
    """
    path = Path(path)
    if not path.is_file():
        raise ScdefrError(f"input not found: {path}" if not path.exists() else f"input {path} is not a file")
    try:
        adata = (
            _read_h5ad_without(path, {f"/{name}" for name in leave_on_disk}) if leave_on_disk else ad.read_h5ad(path)
        )
    except MemoryError:
        raise
    except Exception as exc:  # anndata/h5py raise many types for corrupt files
        _raise_if_refused(exc, path)
        raise ScdefrError(f"cannot read {path} as h5ad (corrupt or not an h5ad?): {_one_line(exc)}") from None
    if require_uns and require_uns not in adata.uns:
        raise ScdefrError(f"{path} has no uns['{require_uns}']; give the output of {made_by or 'the previous step'}")
    return adata


def _read_h5ad_without(path: Path, skipped: set[str]) -> ad.AnnData:
    """The h5ad at ``path`` without the elements named in ``skipped`` (``'/X'``, ``'/layers/<name>'``)."""
    from anndata.experimental import read_dispatched

    def read(read_func, name, element, iospec):
        if name in skipped:
            return None
        if name == "/layers":
            return {key: read_elem(layer) for key, layer in element.items() if layer.name not in skipped}
        return read_func(element)

    with h5py.File(path, "r") as handle:
        return read_dispatched(handle, read)


def detect_format(path: str | os.PathLike) -> str:
    """Tell the format of an input from its content (HDF5 groups, gzip, folders) and, for text, its name.

    Parameters
    ----------
    path
        A file or a 10x matrix folder.

    Returns
    -------
    str
        One of :data:`FORMATS`.
    """
    path = Path(path)
    if not path.exists():
        raise ScdefrError(f"input not found: {path}")
    if path.is_dir():
        if _find_in_folder(path, ("matrix.mtx",)) is None:
            raise ScdefrError(f"folder {path} has no matrix.mtx[.gz]; give a 10x matrix folder or a file ({SUPPORTED})")
        return "10x_mtx"
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if not head:
        raise ScdefrError(f"input file {path} is empty")
    if head.startswith(_HDF5_SIGNATURE):
        return _detect_hdf5_layout(path)
    name = path.name.lower()
    if head.startswith(_GZIP_SIGNATURE):
        if name.endswith(".h5ad.gz"):
            return "h5ad"
        name = name.removesuffix(".gz")
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt", ".tab")):
        return "tsv"
    if name.endswith((".h5ad", ".h5", ".hdf5")):
        raise ScdefrError(f"{path} is not an HDF5 file (corrupt or wrongly named)")
    raise ScdefrError(f"unknown input format for {path}; expected {SUPPORTED}")


def _raise_if_refused(exc: BaseException, path: Path) -> None:
    """Raise ``exc`` as the ``OSError`` it wraps when the system refused the read (permission, I/O
    error, a full disk for a decompressed copy), not the file's content: that is exit status 4 (or 3
    for memory), not a bad input."""
    if not isinstance(exc, (OSError, RuntimeError)):
        return
    refused = system_error(exc, getattr(exc, "filename", None) or path)
    if refused is None:
        return
    if refused.errno == errno.ENOMEM:
        raise MemoryError(f"out of memory reading {path}") from None
    if refused.errno in SYSTEM_REFUSALS:
        raise refused from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _detect_hdf5_layout(path: Path) -> str:
    try:
        with h5py.File(path, "r") as handle:
            keys = set(handle.keys())
            encoding = handle.attrs.get("encoding-type", "")
            if isinstance(encoding, bytes):
                encoding = encoding.decode()
            if encoding == "anndata" or {"X", "obs", "var"} <= keys:
                return "h5ad"
            if "exprs" in keys:
                return "paper_h5"
            if "X" in keys and keys <= {"X", "Y"}:
                return "xy_h5"
            if "matrix" in keys or any(
                isinstance(handle[k], h5py.Group) and {"barcodes", "data", "indices", "indptr"} <= set(handle[k].keys())
                for k in keys
            ):
                return "10x_h5"
    except OSError as exc:
        _raise_if_refused(exc, path)
        raise ScdefrError(f"cannot read {path} as HDF5 (corrupt or truncated?): {_one_line(exc)}") from None
    raise ScdefrError(
        f"unknown HDF5 layout in {path} (top-level keys: {', '.join(sorted(keys)) or 'none'}); expected {SUPPORTED}"
    )

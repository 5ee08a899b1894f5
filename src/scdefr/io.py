"""Reading raw counts into AnnData, whatever form they arrive in, and checking they are raw counts.

Supported inputs (the format is taken from the content, not trusted from the extension):

- ``.h5ad`` (also nf-core/scrnaseq's ``*_matrix.h5ad``): counts from ``layers['counts']``, ``X`` or
  ``.raw``, whichever first holds raw counts;
- 10x Genomics ``.h5`` (``filtered_feature_bc_matrix.h5``, v2 and v3);
- a 10x matrix folder (``matrix.mtx[.gz]``, ``features.tsv[.gz]`` or ``genes.tsv[.gz]``,
  ``barcodes.tsv[.gz]``; Cell Ranger and STARsolo layouts);
- ``.csv`` / ``.tsv`` tables (optionally gzipped), cells x genes, or genes x cells with ``transpose``;
- the HDF5 layout of the scDEFR/scDeepCluster papers (``exprs``, ``obs``, ``var``, ``obs_names``,
  ``var_names``).

Whatever the source, :func:`read_counts` returns cells x genes with the counts in ``X`` as CSR
float32, the input's ``obs`` and ``var`` columns, and ``uns['scdefr_input']`` saying where the counts
came from. Every failure is a one-line :class:`~scdefr.errors.ScdefrError`.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scanpy as sc
from anndata.io import read_elem
from scipy import sparse

from .errors import ScdefrError

logger = logging.getLogger(__name__)

FORMATS = ("h5ad", "10x_h5", "10x_mtx", "csv", "tsv", "paper_h5")
SUPPORTED = ".h5ad, 10x .h5, 10x matrix folder, .csv/.tsv[.gz], or the paper's HDF5 layout"

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_GZIP_SIGNATURE = b"\x1f\x8b"
# log1p of raw counts rarely exceeds this; normalised (CPM-like) values go far beyond it.
_LOG_SCALE_MAX = 30.0
# Values the raw-count checks look at at once: their temporaries (rounding, masks) stay this size.
CHECK_CHUNK = 1 << 24
# Names that say "this is a cell": a run of >= 8 nucleotides (barcodes) or cell_12 / Cell.12 style ids.
_CELL_NAME = re.compile(r"[ACGT]{8,}|^cell[_.\-]?\d+$", re.IGNORECASE)
_ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{6,}")
_GENE_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]*$")


def read_counts(path: str | os.PathLike, *, transpose: bool = False) -> ad.AnnData:
    """Read raw counts from ``path`` as cells x genes (X: CSR float32), validated by :func:`validate_raw_counts`.

    ``transpose`` is for tables stored genes x cells (csv/tsv only; other formats carry their orientation).
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
        else:
            adata, source = _read_table(path, sep="," if fmt == "csv" else "\t", transpose=transpose), "table"
    except ScdefrError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, EOFError, UnicodeDecodeError) as exc:
        raise ScdefrError(f"cannot read {path} as {fmt}: {_one_line(exc)}") from None

    adata = _tidy(adata, path)
    validate_raw_counts(adata.X, what=f"counts in {path.name} ({source})")
    adata.uns["scdefr_input"] = {"path": str(path), "format": fmt, "counts": source}
    logger.info("read %d cells x %d genes from %s", adata.n_obs, adata.n_vars, source)
    return adata


def read_step_h5ad(
    path: str | os.PathLike, *, require_uns: str | None = None, made_by: str = "", leave_on_disk: tuple[str, ...] = ()
) -> ad.AnnData:
    """Read an ``.h5ad`` that an earlier step wrote, with a one-line error if it is missing, corrupt or foreign.

    ``require_uns`` names the key the producing step leaves in ``uns`` (e.g. ``'scdefr_qc'``);
    ``made_by`` names that step for the message (e.g. ``'scdefr qc'``). ``leave_on_disk`` names
    matrices the step does not use (``'X'``, ``'layers/<name>'``): they are not read, and
    ``scdefr._files.write_h5ad(..., carry=...)`` copies them into the step's output.
    """
    path = Path(path)
    if not path.is_file():
        raise ScdefrError(f"input not found: {path}" if not path.exists() else f"input {path} is not a file")
    try:
        adata = _read_h5ad_without(path, {f"/{name}" for name in leave_on_disk}) if leave_on_disk else ad.read_h5ad(path)
    except Exception as exc:  # anndata/h5py raise many types for corrupt files
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
    """One of :data:`FORMATS`, decided from the content (HDF5 groups, gzip, folders) and, for text, the name."""
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
        raise ScdefrError(f"cannot read {path}: {exc.strerror}") from None
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


def validate_raw_counts(matrix, *, what: str = "counts", uns: dict | None = None) -> None:
    """Raise :class:`ScdefrError` unless ``matrix`` holds raw counts: finite, >= 0, integer-valued.

    Floats are fine as long as they are whole numbers. ``uns`` (if given) is checked for scanpy's
    ``log1p`` marker so integer-looking log data is caught too.
    """
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ScdefrError(f"{what}: empty matrix ({matrix.shape[0]} cells x {matrix.shape[1]} genes)")
    values = matrix.data if sparse.issparse(matrix) else np.asarray(matrix)
    if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
        raise ScdefrError(f"{what}: values are {values.dtype}, not numbers")
    if values.size == 0:
        return  # all-zero sparse matrix; the QC filters report it
    n_nan = n_infinite = 0
    for chunk in _chunks(values):
        n_nan += int(np.isnan(chunk).sum())
        n_infinite += int(np.isinf(chunk).sum())
    if n_nan or n_infinite:
        kind = "NaN" if n_nan else "infinite"
        raise ScdefrError(f"{what}: {n_nan + n_infinite} {kind} value(s); give raw counts")
    vmin = min(chunk.min() for chunk in _chunks(values))
    if vmin < 0:
        raise ScdefrError(f"{what}: negative values (min {vmin:g}); give raw counts, not scaled data")
    if uns is not None and "log1p" in uns:
        raise ScdefrError(f"{what}: uns['log1p'] says the data were log-transformed; give raw counts")
    for chunk in _chunks(values):
        fractional = np.abs(chunk - np.round(chunk)) > 1e-6
        if fractional.any():
            example = chunk[fractional][0]
            vmax = max(chunk.max() for chunk in _chunks(values))
            if vmax <= _LOG_SCALE_MAX:
                raise ScdefrError(
                    f"{what}: non-integer values (e.g. {example:g}, max {vmax:g}) - looks log-transformed; give raw counts"
                )
            raise ScdefrError(f"{what}: non-integer values (e.g. {example:g}) - looks normalised; give raw counts")


def _chunks(values: np.ndarray):
    """``values`` flattened, CHECK_CHUNK at a time."""
    flat = values.reshape(-1)
    for start in range(0, flat.size, CHECK_CHUNK):
        yield flat[start:start + CHECK_CHUNK]


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
            if "matrix" in keys or any(
                isinstance(handle[k], h5py.Group) and {"barcodes", "data", "indices", "indptr"} <= set(handle[k].keys())
                for k in keys
            ):
                return "10x_h5"
    except OSError as exc:
        raise ScdefrError(f"cannot read {path} as HDF5 (corrupt or truncated?): {_one_line(exc)}") from None
    raise ScdefrError(
        f"unknown HDF5 layout in {path} (top-level keys: {', '.join(sorted(keys)) or 'none'}); expected {SUPPORTED}"
    )


def _read_h5ad_counts(path: Path) -> tuple[ad.AnnData, str]:
    """Counts from layers['counts'], else X, else .raw: the first that holds raw counts.

    Only obs, var and the matrices tried are read, one at a time: reading the whole file would hold
    every matrix in it at once (a CELLxGENE file's normalised X beside its raw counts, say). Files
    whose elements lack anndata's encodings (written before anndata 0.8) are read whole.
    """
    if path.name.lower().endswith(".gz"):
        with tempfile.TemporaryDirectory(prefix="scdefr_") as tmp:
            plain = Path(tmp) / "input.h5ad"
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return _read_h5ad_counts(plain)
    with h5py.File(path, "r") as handle:
        matrices = [key for key in ("layers/counts", "X", "raw/X") if key in handle]
        if all("encoding-type" in handle[key].attrs for key in ["obs", *matrices]):
            def stored(key: str, var_key: str):
                return lambda: (read_elem(handle[key]), read_elem(handle[var_key])) if key in handle else None

            sources = {"layers['counts']": stored("layers/counts", "var"), "X": stored("X", "var"),
                       "raw.X": stored("raw/X", "raw/var")}
            uns = dict.fromkeys(handle["uns"]) if "uns" in handle else {}
            return _first_raw_counts(path, sources, read_elem(handle["obs"]), uns)
    adata = ad.read_h5ad(path)
    raw = adata.raw
    sources = {"layers['counts']": lambda: (adata.layers["counts"], adata.var) if "counts" in adata.layers else None,
               "X": lambda: (adata.X, adata.var) if adata.X is not None else None,
               "raw.X": lambda: (raw.X, raw.var) if raw is not None else None}
    return _first_raw_counts(path, sources, adata.obs, adata.uns)


def _first_raw_counts(path: Path, sources: dict, obs: pd.DataFrame, uns) -> tuple[ad.AnnData, str]:
    """The first matrix :func:`validate_raw_counts` accepts, as an AnnData; ``sources`` maps each
    source's name to a function giving ``(matrix, var)``, or ``None`` when the file lacks it."""
    problems = []
    for source, read in sources.items():
        found = read()
        if found is None:
            continue
        matrix, var = found
        found = None  # a rejected matrix is freed before the next one is read
        try:
            validate_raw_counts(matrix, what=source, uns=uns if source == "X" else None)
        except ScdefrError as exc:
            problems.append(str(exc))
            matrix = None
            continue
        if problems:
            logger.info("using %s as raw counts (%s)", source, problems[-1])
        return ad.AnnData(X=matrix, obs=obs.copy(), var=var.copy()), source
    if not problems:
        raise ScdefrError(f"{path} has no count matrix (X is empty and there is no layers['counts'] or .raw)")
    raise ScdefrError(f"{path}: no raw counts found; {problems[0]}")


def _find_in_folder(folder: Path, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_mtx_folder(folder: Path) -> ad.AnnData:
    """scanpy.read_10x_mtx, after bringing STARsolo-style mixed (un)compressed files to the layout it expects."""
    matrix = _find_in_folder(folder, ("matrix.mtx",))
    barcodes = _find_in_folder(folder, ("barcodes.tsv",))
    features = _find_in_folder(folder, ("features.tsv", "genes.tsv"))
    wanted = (("barcodes.tsv[.gz]", barcodes), ("features.tsv[.gz] or genes.tsv[.gz]", features))
    missing = [name for name, found in wanted if not found]
    if missing:
        raise ScdefrError(f"10x matrix folder {folder} lacks {' and '.join(missing)}")
    legacy = features.name.startswith("genes.tsv")
    files = {"matrix.mtx": matrix, "barcodes.tsv": barcodes, ("genes.tsv" if legacy else "features.tsv"): features}
    # scanpy reads legacy folders uncompressed and v3 folders gzipped, nothing in between.
    wanted_gz = not legacy
    if all(p.name.endswith(".gz") == wanted_gz for p in files.values()):
        return sc.read_10x_mtx(folder)
    with tempfile.TemporaryDirectory(prefix="scdefr_mtx_") as tmp:
        for stem, source in files.items():
            target = Path(tmp) / (f"{stem}.gz" if wanted_gz else stem)
            opener = gzip.open if source.name.endswith(".gz") else open
            writer = gzip.open if wanted_gz else open
            with opener(source, "rb") as src, writer(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return sc.read_10x_mtx(tmp)


def _decode(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "SO":
        decoded = [v.decode() if isinstance(v, bytes) else v for v in values.ravel()]
        return np.array(decoded, dtype=object).reshape(values.shape)
    return values


def _frame_from_group(group: h5py.Group | dict, index: np.ndarray) -> pd.DataFrame:
    """One column per 1-D dataset of the group; nested groups and other shapes are not annotations."""
    columns = {}
    for key, item in group.items():
        if isinstance(item, h5py.Dataset) and item.ndim == 1 and item.shape[0] == len(index):
            columns[key] = _decode(item[...])
    return pd.DataFrame(columns, index=pd.Index(index.astype(str)))


def _read_paper_h5(path: Path) -> ad.AnnData:
    """The scDEFR/scDeepCluster ``data.h5`` layout: exprs (dense or CSR group) plus obs/var annotations."""
    with h5py.File(path, "r") as handle:
        for key in ("obs_names", "var_names"):
            if key not in handle:
                raise ScdefrError(f"{path}: paper HDF5 layout without '{key}'")
        obs_names = _decode(handle["obs_names"][...])
        var_names = _decode(handle["var_names"][...])
        exprs = handle["exprs"]
        if isinstance(exprs, h5py.Group):
            shape = tuple(int(n) for n in exprs["shape"][...])
            matrix = sparse.csr_matrix((exprs["data"][...], exprs["indices"][...], exprs["indptr"][...]), shape=shape)
        else:
            matrix = sparse.csr_matrix(exprs[...])
        if matrix.shape != (len(obs_names), len(var_names)):
            raise ScdefrError(
                f"{path}: exprs is {matrix.shape[0]} x {matrix.shape[1]} but there are "
                f"{len(obs_names)} obs_names and {len(var_names)} var_names"
            )
        obs = _frame_from_group(handle["obs"] if "obs" in handle else {}, obs_names)
        var = _frame_from_group(handle["var"] if "var" in handle else {}, var_names)
    return ad.AnnData(X=matrix, obs=obs, var=var)


def _fraction(names: pd.Index, pattern: re.Pattern) -> float:
    names = names.astype(str)
    return float(np.mean([bool(pattern.search(n)) for n in names])) if len(names) else 0.0


def _looks_genes_by_cells(rows: pd.Index, columns: pd.Index) -> bool:
    """Genes in rows and cells in columns: barcodes/cell ids across, or gene ids/symbols down a tall table."""
    rows_cells, cols_cells = _fraction(rows, _CELL_NAME), _fraction(columns, _CELL_NAME)
    if cols_cells > 0.5 and rows_cells < 0.5:
        return True
    if _fraction(rows, _ENSEMBL_GENE) > 0.5 and _fraction(columns, _ENSEMBL_GENE) < 0.5:
        return True
    tall = len(rows) > 10 * len(columns) and len(rows) >= 1000
    return tall and rows_cells < 0.5 and _fraction(rows, _GENE_SYMBOL) > 0.9


def _read_table(path: Path, *, sep: str, transpose: bool) -> ad.AnnData:
    with open(path, "rb") as handle:
        gzipped = handle.read(2) == _GZIP_SIGNATURE
    table = pd.read_csv(path, sep=sep, index_col=0, compression="gzip" if gzipped else None)
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise ScdefrError(f"{path}: empty table ({table.shape[0]} rows x {table.shape[1]} columns)")
    non_numeric = [str(c) for c, dtype in table.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
    if non_numeric:
        raise ScdefrError(
            f"{path}: non-numeric column(s) {', '.join(non_numeric[:3])}; the table must hold counts only "
            "(first column: names)"
        )
    if not transpose and _looks_genes_by_cells(table.index, table.columns):
        raise ScdefrError(
            f"{path} looks like genes x cells ({table.shape[0]} rows named like genes, {table.shape[1]} columns "
            "named like cells); add --transpose"
        )
    if transpose:
        table = table.T
    matrix = sparse.csr_matrix(table.to_numpy(dtype=np.float32))
    obs, var = pd.DataFrame(index=table.index.astype(str)), pd.DataFrame(index=table.columns.astype(str))
    return ad.AnnData(X=matrix, obs=obs, var=var)


def _tidy(adata: ad.AnnData, path: Path) -> ad.AnnData:
    """Cells x genes, CSR float32, unique ids; refuses duplicate cells, makes duplicate gene names unique."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScdefrError(f"{path}: empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)")
    duplicated = adata.obs_names[adata.obs_names.duplicated()]
    if len(duplicated):
        raise ScdefrError(
            f"{path}: {len(duplicated)} duplicate cell id(s), e.g. '{duplicated[0]}'; cell ids must be unique"
        )
    if adata.var_names.has_duplicates:
        logger.info("%d duplicate gene names made unique", int(adata.var_names.duplicated().sum()))
        adata.var_names_make_unique()
    matrix = sparse.csr_matrix(adata.X, dtype=np.float32)
    matrix.sort_indices()
    return ad.AnnData(X=matrix, obs=adata.obs.copy(), var=adata.var.copy())

"""Readers of each input format, each returning cells x genes with the counts in X."""

from __future__ import annotations

import gzip
import logging
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

from ..errors import ScdefrError
from ._counts import FLOAT32_EXACT, float32_rounding_note, validate_raw_counts

logger = logging.getLogger(__name__)
_GZIP_SIGNATURE = b"\x1f\x8b"

# Names that say "this is a cell": a run of >= 8 nucleotides (barcodes) or cell_12 / Cell.12 style ids.
_CELL_NAME = re.compile(r"[ACGT]{8,}|^cell[_.\-]?\d+$", re.IGNORECASE)
_ENSEMBL_GENE = re.compile(r"^ENS[A-Z]*G\d{6,}")
_GENE_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9.\-_]*$")


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
                try:
                    shutil.copyfileobj(src, dst)
                except OSError as exc:
                    if exc.errno is None:  # gzip's own error: a damaged file, not the system
                        raise
                    raise OSError(exc.errno, exc.strerror, str(plain)) from None  # the temporary copy's disk
            return _read_h5ad_counts(plain)
    with h5py.File(path, "r") as handle:
        matrices = [key for key in ("layers/counts", "X", "raw/X") if key in handle]
        if all("encoding-type" in handle[key].attrs for key in ["obs", *matrices]):

            def stored(key: str, var_key: str):
                return lambda: (read_elem(handle[key]), read_elem(handle[var_key])) if key in handle else None

            sources = {
                "layers['counts']": stored("layers/counts", "var"),
                "X": stored("X", "var"),
                "raw.X": stored("raw/X", "raw/var"),
            }
            uns = dict.fromkeys(handle["uns"]) if "uns" in handle else {}
            return _first_raw_counts(path, sources, read_elem(handle["obs"]), uns)
    adata = ad.read_h5ad(path)
    raw = adata.raw
    sources = {
        "layers['counts']": lambda: (adata.layers["counts"], adata.var) if "counts" in adata.layers else None,
        "X": lambda: (adata.X, adata.var) if adata.X is not None else None,
        "raw.X": lambda: (raw.X, raw.var) if raw is not None else None,
    }
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


def _read_xy_h5(path: Path) -> ad.AnnData:
    """scDeepCluster's and scDCC's example data: ``X`` dense cells x genes and, if there, ``Y`` one label
    per cell (kept as ``obs['Y']``); the files name no cells or genes."""
    with h5py.File(path, "r") as handle:
        counts = handle["X"]
        if not isinstance(counts, h5py.Dataset) or counts.ndim != 2:
            raise ScdefrError(f"{path}: X/Y HDF5 layout whose X is not a cells x genes matrix")
        matrix = sparse.csr_matrix(counts[...])
        labels = handle["Y"][...] if "Y" in handle else None
    obs = pd.DataFrame(index=pd.Index([f"cell_{i}" for i in range(matrix.shape[0])]))
    if labels is not None:
        if labels.shape != (matrix.shape[0],):
            raise ScdefrError(
                f"{path}: Y holds {labels.size} labels for the {matrix.shape[0]} cells of X (shape {labels.shape}); "
                "it needs one label per cell"
            )
        obs["Y"] = pd.Categorical(_decode(labels).astype(str))
    var = pd.DataFrame(index=pd.Index([f"gene_{j}" for j in range(matrix.shape[1])]))
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
    rounded = float32_rounding_note(table.to_numpy()) if bool((table.max() > FLOAT32_EXACT).any()) else None
    matrix = sparse.csr_matrix(table.to_numpy(dtype=np.float32))
    obs, var = pd.DataFrame(index=table.index.astype(str)), pd.DataFrame(index=table.columns.astype(str))
    adata = ad.AnnData(X=matrix, obs=obs, var=var)
    if rounded:
        adata.uns["scdefr_notes"] = [rounded]
    return adata


def _tidy(adata: ad.AnnData, path: Path) -> tuple[ad.AnnData, list[str]]:
    """Cells x genes, CSR float32, unique ids; refuses duplicate cells, makes duplicate gene names unique.

    Returns the AnnData and notes on what was changed beyond that (logged as warnings too).
    """
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ScdefrError(f"{path}: empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)")
    duplicated = adata.obs_names[adata.obs_names.duplicated()]
    if len(duplicated):
        raise ScdefrError(
            f"{path}: {len(duplicated)} duplicate cell id(s), e.g. '{duplicated[0]}'; cell ids must be unique"
        )
    notes = []
    if adata.var_names.has_duplicates:
        first = adata.var_names[adata.var_names.duplicated()][0]
        notes.append(
            f"{int(adata.var_names.duplicated().sum())} duplicate gene name(s) made unique by appending "
            f"-1, -2, ... (e.g. '{first}' -> '{first}-1')"
        )
        adata.var_names_make_unique()
    rounded = float32_rounding_note(adata.X)
    if rounded:
        notes.append(rounded)
    matrix = sparse.csr_matrix(adata.X, dtype=np.float32)
    matrix.sort_indices()
    for note in notes:
        logger.warning("%s: %s", path.name, note)
    return ad.AnnData(X=matrix, obs=adata.obs.copy(), var=adata.var.copy()), notes

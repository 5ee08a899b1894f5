"""Simulated UMI counts with planted cell types, for the demo, the tests and the benchmarks.

The generative model follows what droplet data look like (in the spirit of Splatter):

- gene base abundances are log-normal, so a few genes take most of the counts;
- each planted type up- or down-regulates its own small set of marker genes (log-fold changes);
- each cell's library size is log-normal around ``library_size``;
- counts are negative binomial (gene-wise dispersion), then zero-inflated: the chance of an extra
  zero falls with the expected count, as dropout does;
- a few mitochondrial genes (``MT-...``) take a few percent of each library; a small fraction of
  "damaged" cells have small libraries and a high mitochondrial share, so QC has something to remove.

Cells are generated in chunks that are appended to a growing CSR matrix, so memory stays close to the
size of the sparse result even for millions of cells. ``part`` draws one slice of the cells, so that
processes can share a large simulation (``scdefr simulate --parts``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import ScdefrError

__all__ = ["simulate_counts"]

logger = logging.getLogger(__name__)

# The 13 protein-coding genes of the human mitochondrial genome.
MITO_GENES = (
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
)
# Dense values generated at once per chunk; bounds the working memory (a few arrays of this size).
_CHUNK_ENTRIES = 1_000_000


def simulate_counts(
    n_cells: int = 2000,
    n_genes: int = 2000,
    n_clusters: int = 6,
    seed: int = 0,
    *,
    marker_fraction: float = 0.03,
    marker_log_fold_change: float = 0.8,
    down_fraction: float = 0.3,
    library_size: float = 2500.0,
    library_size_sdlog: float = 0.4,
    dispersion: float = 0.3,
    dropout_midpoint: float = -1.0,
    dropout_max: float = 0.5,
    n_mito: int = 13,
    mito_fraction: float = 0.04,
    damaged_fraction: float = 0.02,
    imbalance: float = 0.5,
    type_proportions: Sequence[float] | None = None,
    part: tuple[int, int] | None = None,
) -> anndata.AnnData:  # noqa: F821 - anndata is imported lazily below
    """Simulate a cells x genes UMI count matrix with ``n_clusters`` planted cell types.

    Parameters
    ----------
    n_cells, n_genes, n_clusters
        Size of the data set and number of planted types (labels in ``obs['cell_type']``).
    seed
        Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same counts.
    marker_fraction
        Fraction of the (non-mitochondrial) genes that are markers of each type.
    marker_log_fold_change
        Median natural-log fold change of a marker gene (0.8 is about 2.2x); each marker's fold change is
        log-normal around it. The default makes the types recoverable but not trivially separable
        (log-normalisation, PCA and k-means reach an ARI of about 0.75-0.8 on 500-3,000 cells).
    down_fraction
        Fraction of markers that are down- rather than up-regulated.
    library_size, library_size_sdlog
        Median total UMIs per cell and the standard deviation of its logarithm.
    dispersion
        Median negative-binomial dispersion (variance = mu + dispersion * mu^2), log-normal across genes.
    dropout_midpoint, dropout_max
        Zero inflation: an expected count ``mu`` gets an extra zero with probability
        ``dropout_max / (1 + exp(log(mu) - dropout_midpoint))``.
    n_mito, mito_fraction
        Number of mitochondrial genes (named ``MT-...``) and their mean share of a healthy cell's counts.
    damaged_fraction
        Fraction of low-quality cells: a third of the library size and five times the mitochondrial share.
    imbalance
        Spread of the type proportions (0: equal sizes; 0.5: the largest type is a few times the smallest).
    type_proportions
        Each type's expected share of the cells (``n_clusters`` positive numbers, rescaled to sum to 1)
        in place of the random spread ``imbalance`` draws: e.g. one type of 60% and several under 3%.
    part
        ``(i, n_parts)``: only the i-th of ``n_parts`` equal slices of the cells. The gene programme and
        every cell's type, library size and damage are drawn as without ``part``; the slice's counts
        come from their own stream (seeded by ``seed, i, n_parts``), so the slices can be drawn in
        parallel and concatenated. The counts then differ from those drawn without ``part``.

    Returns
    -------
    anndata.AnnData
        ``X`` the integer counts (CSR, float32), ``obs['cell_type']`` (categorical), ``obs['damaged']``,
        ``var['marker_of']`` (the type a gene marks, '' if none) and the parameters in ``uns['simulation']``.

    Raises
    ------
    ScdefrError
        A size, fraction or proportion is out of range (one line naming it), or ``part`` is no slice of
        the cells.

    Examples
    --------
    >>> from scdefr.simulate import simulate_counts
    >>> adata = simulate_counts(n_cells=500, n_genes=300, n_clusters=3, seed=1)
    >>> adata.shape, adata.obs["cell_type"].nunique()
    ((500, 300), 3)
    """
    import anndata as ad

    _check_parameters(n_cells, n_genes, n_clusters, n_mito, locals())
    if type_proportions is not None:
        type_proportions = _check_type_proportions(type_proportions, n_clusters)
    first, last = _part_cells(n_cells, part)
    rng = np.random.default_rng(seed)
    n_mito = min(n_mito, len(MITO_GENES))
    n_other = n_genes - n_mito

    # Gene programme: base abundances, markers and fold changes per type, dispersion per gene.
    base = rng.lognormal(mean=0.0, sigma=1.5, size=n_other)
    log_fold = np.zeros((n_clusters, n_other))
    marker_of = np.full(n_genes, "", dtype=object)
    n_markers = max(1, int(round(marker_fraction * n_other)))
    for k in range(n_clusters):
        genes = rng.choice(n_other, size=n_markers, replace=False)
        size = rng.lognormal(np.log(marker_log_fold_change), 0.4, size=n_markers)
        sign = np.where(rng.random(n_markers) < down_fraction, -1.0, 1.0)
        log_fold[k, genes] = sign * size
        marker_of[n_mito + genes] = _type_name(k)
    profiles = base * np.exp(log_fold)
    profiles /= profiles.sum(axis=1, keepdims=True)  # each type's share of non-mito counts per gene
    mito_profile = rng.dirichlet(np.full(n_mito, 5.0)) if n_mito else np.zeros(0)
    inverse_dispersion = 1.0 / rng.lognormal(np.log(dispersion), 0.3, size=n_genes)

    # Cells: type, library size, damage.
    weights = rng.lognormal(0.0, imbalance, size=n_clusters) if imbalance > 0 else np.ones(n_clusters)
    if type_proportions is not None:  # the spread is drawn all the same, so the stream below matches the default's
        weights = type_proportions
    cell_type = rng.choice(n_clusters, size=n_cells, p=weights / weights.sum())
    library = rng.lognormal(np.log(library_size), library_size_sdlog, size=n_cells)
    damaged = rng.random(n_cells) < damaged_fraction
    library[damaged] /= 3.0
    mito_share = np.clip(rng.normal(mito_fraction, mito_fraction / 4, size=n_cells), 0.0, 0.9)
    mito_share[damaged] = np.minimum(mito_share[damaged] * 5.0, 0.9)
    if not n_mito:
        mito_share[:] = 0.0

    count_rng = rng if part is None else np.random.default_rng([seed, *part])
    chunk = max(1, _CHUNK_ENTRIES // n_genes)
    rows = _CsrRows(n_genes, expected_nnz=min(last - first, chunk) * n_genes)
    for start in range(first, last, chunk):
        stop = min(start + chunk, last)
        mu = np.empty((stop - start, n_genes))
        mu[:, :n_mito] = (library[start:stop] * mito_share[start:stop])[:, None] * mito_profile
        mu[:, n_mito:] = (library[start:stop] * (1.0 - mito_share[start:stop]))[:, None] * profiles[
            cell_type[start:stop]
        ]
        counts = _zinb(count_rng, mu, inverse_dispersion, dropout_midpoint, dropout_max)
        rows.append(counts)
        del mu, counts
        if stop < last and ((start - first) // chunk) % 20 == 19:
            logger.info("simulated %d of %d cells", stop - first, last - first)
    X = rows.to_csr()

    width = len(str(n_cells))
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(
                cell_type[first:last], categories=[_type_name(k) for k in range(n_clusters)]
            ),
            "damaged": damaged[first:last],
        },
        index=[f"cell_{i:0{width}d}" for i in range(first + 1, last + 1)],
    )
    gene_width = max(5, len(str(n_other)))
    names = list(MITO_GENES[:n_mito]) + [f"gene_{i:0{gene_width}d}" for i in range(1, n_other + 1)]
    var = pd.DataFrame({"marker_of": pd.Categorical(marker_of.astype(str))}, index=names)
    params = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_clusters": n_clusters,
        "seed": seed,
        "marker_fraction": marker_fraction,
        "marker_log_fold_change": marker_log_fold_change,
        "down_fraction": down_fraction,
        "library_size": library_size,
        "library_size_sdlog": library_size_sdlog,
        "dispersion": dispersion,
        "dropout_midpoint": dropout_midpoint,
        "dropout_max": dropout_max,
        "n_mito": n_mito,
        "mito_fraction": mito_fraction,
        "damaged_fraction": damaged_fraction,
        "imbalance": imbalance,
    }
    if type_proportions is not None:
        params["type_proportions"] = [float(p) for p in type_proportions]
    if part is not None:
        params["part"] = list(part)
    logger.info(
        "simulated %d cells x %d genes, %d types, %.1f%% non-zero",
        X.shape[0],
        n_genes,
        n_clusters,
        100.0 * X.nnz / max(1, X.shape[0] * n_genes),
    )
    return ad.AnnData(X=X, obs=obs, var=var, uns={"simulation": params})


def _part_cells(n_cells: int, part: tuple[int, int] | None) -> tuple[int, int]:
    """First and last (exclusive) cell of slice ``part = (i, n_parts)``: the whole range without one."""
    if part is None:
        return 0, n_cells
    index, n_parts = part
    if not 1 <= n_parts <= n_cells or not 0 <= index < n_parts:
        raise ScdefrError(f"part must be (i, n_parts) with 0 <= i < n_parts <= n_cells ({n_cells}), got {part}")
    return n_cells * index // n_parts, n_cells * (index + 1) // n_parts


def _type_name(k: int) -> str:
    return f"type_{k + 1}"


def _check_parameters(n_cells, n_genes, n_clusters, n_mito, params) -> None:
    if n_cells < 1 or n_genes < 1:
        raise ScdefrError(f"need at least one cell and one gene, got {n_cells} cells and {n_genes} genes")
    if n_clusters < 1 or n_clusters > n_cells:
        raise ScdefrError(f"n_clusters must be between 1 and the number of cells ({n_cells}), got {n_clusters}")
    if n_mito < 0 or n_genes - min(n_mito, len(MITO_GENES)) < 1:
        raise ScdefrError(f"n_mito must be >= 0 and leave at least one other gene, got {n_mito} of {n_genes} genes")
    for name in ("marker_fraction", "down_fraction", "dropout_max", "mito_fraction", "damaged_fraction"):
        if not 0.0 <= params[name] <= 1.0:
            raise ScdefrError(f"{name} must be between 0 and 1, got {params[name]}")
    for name in ("library_size", "dispersion", "marker_log_fold_change"):
        if not params[name] > 0:
            raise ScdefrError(f"{name} must be > 0, got {params[name]}")
    for name in ("library_size_sdlog", "imbalance"):
        if not params[name] >= 0:
            raise ScdefrError(f"{name} must be >= 0, got {params[name]}")


def _check_type_proportions(proportions, n_clusters: int) -> np.ndarray:
    """The shares as probabilities summing to 1, or a one-line error."""
    proportions = np.asarray(proportions, dtype=float).ravel()
    if proportions.size != n_clusters:
        raise ScdefrError(f"type proportions must give one share per type ({n_clusters}), got {proportions.size}")
    if not np.all(np.isfinite(proportions)) or np.any(proportions <= 0):
        raise ScdefrError(f"type proportions must be positive numbers, got {proportions.tolist()}")
    return proportions / proportions.sum()


def _zinb(rng, mu, inverse_dispersion, dropout_midpoint, dropout_max):
    """Zero-inflated negative-binomial draws with means ``mu`` (cells x genes)."""
    theta = np.broadcast_to(inverse_dispersion, mu.shape)
    counts = rng.negative_binomial(theta, theta / (theta + mu))
    with np.errstate(divide="ignore"):
        dropout = dropout_max / (1.0 + np.exp(np.log(mu) - dropout_midpoint))
    counts[rng.random(mu.shape) < dropout] = 0
    return counts


class _CsrRows:
    """Grows a CSR matrix chunk of rows by chunk.

    The buffers grow in place (``ndarray.resize`` is ``realloc``, which the kernel serves by remapping
    large blocks), so memory stays near one copy of the result; collecting the chunks and stacking them
    at the end would hold the data twice.
    """

    def __init__(self, n_cols: int, expected_nnz: int):
        self.n_cols = n_cols
        self.nnz = 0
        self.data = np.empty(max(1, expected_nnz), dtype=np.float32)
        self.indices = np.empty(max(1, expected_nnz), dtype=np.int32)  # column numbers: n_cols < 2**31
        self.row_nnz = [np.zeros(1, dtype=np.int64)]

    def append(self, rows: np.ndarray) -> None:
        piece = sp.csr_matrix(rows, dtype=np.float32)
        end = self.nnz + piece.nnz
        if end > self.data.size:
            capacity = max(end, int(self.data.size * 1.25))
            self.data.resize(capacity, refcheck=False)
            self.indices.resize(capacity, refcheck=False)
        self.data[self.nnz : end] = piece.data
        self.indices[self.nnz : end] = piece.indices
        self.row_nnz.append(np.diff(piece.indptr))
        self.nnz = end

    def to_csr(self) -> sp.csr_matrix:
        self.data.resize(self.nnz, refcheck=False)
        self.indices.resize(self.nnz, refcheck=False)
        indptr = np.cumsum(np.concatenate(self.row_nnz))
        if self.nnz < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        return sp.csr_matrix((self.data, self.indices, indptr), shape=(indptr.size - 1, self.n_cols))

"""scdefr.io: every input format round-trips to the same counts; bad inputs give one-line errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
from scipy import sparse

from scdefr import io
from scdefr.errors import ScdefrError
from scdefr.io._readers import _looks_genes_by_cells

N_CELLS, N_GENES = 40, 30


@pytest.fixture
def counts() -> ad.AnnData:
    """Small cells x genes counts with barcodes, gene symbols (two mitochondrial) and a label column."""
    rng = np.random.default_rng(0)
    matrix = rng.negative_binomial(2, 0.4, size=(N_CELLS, N_GENES)).astype(np.float32)
    matrix[:, 5] = 0  # a gene seen in no cell stays readable
    barcodes = [f"{''.join(rng.choice(list('ACGT'), 12))}-1" for _ in range(N_CELLS)]
    genes = [f"Gene{i}" for i in range(N_GENES - 2)] + ["MT-CO1", "MT-ND1"]
    obs = pd.DataFrame({"cell_type": pd.Categorical(rng.choice(["B", "T"], N_CELLS))}, index=barcodes)
    return ad.AnnData(sparse.csr_matrix(matrix), obs=obs, var=pd.DataFrame(index=genes))


def dense(adata: ad.AnnData) -> np.ndarray:
    return adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)


def assert_same_counts(read: ad.AnnData, expected: ad.AnnData) -> None:
    assert sparse.isspmatrix_csr(read.X) or isinstance(read.X, sparse.csr_array)
    assert read.X.dtype == np.float32
    assert list(read.obs_names) == list(expected.obs_names)
    assert list(read.var_names) == list(expected.var_names)
    np.testing.assert_array_equal(dense(read), dense(expected))


# -- writers for each format -------------------------------------------------------------------


def write_10x_h5(adata: ad.AnnData, path: Path) -> Path:
    """Cell Ranger v3 layout: matrix/{data,indices,indptr,shape,barcodes,features/...}, genes x cells CSC."""
    csc = sparse.csr_matrix(adata.X).astype(np.int32)  # CSR of cells x genes == CSC of genes x cells
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(adata.obs_names, dtype="S")
        m["data"] = csc.data
        m["indices"] = csc.indices.astype(np.int64)
        m["indptr"] = csc.indptr.astype(np.int64)
        m["shape"] = np.array([adata.n_vars, adata.n_obs], dtype=np.int32)
        feat = m.create_group("features")
        feat["id"] = np.array([f"ENSG{i:011d}" for i in range(adata.n_vars)], dtype="S")
        feat["name"] = np.array(adata.var_names, dtype="S")
        feat["feature_type"] = np.array(["Gene Expression"] * adata.n_vars, dtype="S")
        feat["genome"] = np.array(["GRCh38"] * adata.n_vars, dtype="S")
        feat["_all_tag_keys"] = np.array([b"genome"])
    return path


def write_mtx_folder(adata: ad.AnnData, folder: Path, *, layout: str) -> Path:
    """layout: 'v3' (all gzipped, features.tsv.gz), 'legacy' (plain genes.tsv) or 'starsolo' (plain features.tsv)."""
    folder.mkdir()
    gz = layout == "v3"
    features = pd.DataFrame({"id": [f"ENSG{i:011d}" for i in range(adata.n_vars)], "name": adata.var_names})
    if layout != "legacy":
        features["type"] = "Gene Expression"
    files = {
        "matrix.mtx": lambda p: scipy.io.mmwrite(p, sparse.csr_matrix(adata.X).T.astype(np.int64)),
        "barcodes.tsv": lambda p: pd.Series(adata.obs_names).to_csv(p, index=False, header=False),
        ("genes.tsv" if layout == "legacy" else "features.tsv"): lambda p: features.to_csv(
            p, sep="\t", index=False, header=False
        ),
    }
    for name, write in files.items():
        plain = folder / name
        write(plain)
        if gz:
            with open(plain, "rb") as src, gzip.open(f"{plain}.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
            plain.unlink()
    return folder


def write_paper_h5(adata: ad.AnnData, path: Path, *, csr: bool) -> Path:
    """The scDEFR/scDeepCluster data.h5 layout: exprs, obs/var groups of 1-D datasets, byte-string names."""
    with h5py.File(path, "w") as f:
        if csr:
            x = sparse.csr_matrix(adata.X)
            g = f.create_group("exprs")
            g["data"], g["indices"], g["indptr"] = x.data, x.indices, x.indptr
            g["shape"] = np.array(x.shape)
        else:
            f["exprs"] = dense(adata)
        f["obs_names"] = np.array(adata.obs_names, dtype="S")
        f["var_names"] = np.array(adata.var_names, dtype="S")
        f.create_group("obs")["cell_type1"] = np.array(adata.obs["cell_type"].astype(str), dtype="S")
        f.create_group("var")
        f.create_group("uns")
    return path


# -- every format reads back the same counts ---------------------------------------------------


def test_h5ad_counts_in_x(counts, tmp_path):
    counts.write_h5ad(tmp_path / "c.h5ad")
    read = io.read_counts(tmp_path / "c.h5ad")
    assert_same_counts(read, counts)
    assert read.obs["cell_type"].equals(counts.obs["cell_type"])
    assert read.uns["scdefr_input"]["counts"] == "X"


def test_h5ad_prefers_counts_layer_over_normalised_x(counts, tmp_path):
    stored = counts.copy()
    stored.layers["counts"] = stored.X.copy()
    stored.X = sparse.csr_matrix(np.log1p(dense(stored) / 3.0))
    stored.write_h5ad(tmp_path / "c.h5ad")
    read = io.read_counts(tmp_path / "c.h5ad")
    assert_same_counts(read, counts)
    assert read.uns["scdefr_input"]["counts"] == "layers['counts']"


def test_h5ad_falls_back_to_raw_when_x_is_log_normalised(counts, tmp_path):
    stored = counts.copy()
    stored.raw = stored.copy()
    stored.X = sparse.csr_matrix(np.log1p(dense(stored) * 0.37))
    stored.write_h5ad(tmp_path / "c.h5ad")
    read = io.read_counts(tmp_path / "c.h5ad")
    assert_same_counts(read, counts)
    assert read.uns["scdefr_input"]["counts"] == "raw.X"


@pytest.mark.filterwarnings("ignore:Element '/X' was written without encoding metadata")
def test_h5ad_written_before_anndata_0_8(counts, tmp_path):
    """A sparse X stored with h5sparse attributes instead of an encoding is still read (whole file)."""
    import h5py

    counts.write_h5ad(tmp_path / "c.h5ad")
    with h5py.File(tmp_path / "c.h5ad", "r+") as handle:
        attrs = handle["X"].attrs
        for key in ("encoding-type", "encoding-version", "shape"):
            del attrs[key]
        attrs["h5sparse_format"], attrs["h5sparse_shape"] = "csr", counts.shape
    read = io.read_counts(tmp_path / "c.h5ad")
    assert_same_counts(read, counts)
    assert read.uns["scdefr_input"]["counts"] == "X"


def test_gzipped_h5ad(counts, tmp_path):
    counts.write_h5ad(tmp_path / "c.h5ad")
    with open(tmp_path / "c.h5ad", "rb") as src, gzip.open(tmp_path / "matrix.h5ad.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert_same_counts(io.read_counts(tmp_path / "matrix.h5ad.gz"), counts)


def test_nf_core_style_h5ad_with_gene_ids_and_symbols(counts, tmp_path):
    """nf-core/scrnaseq *_matrix.h5ad: counts in X, Ensembl ids as var_names, symbols in var['gene_symbols']."""
    stored = counts.copy()
    stored.var["gene_symbols"] = stored.var_names
    stored.var_names = [f"ENSG{i:011d}" for i in range(stored.n_vars)]
    stored.obs["sample"] = "S1"
    stored.write_h5ad(tmp_path / "S1_filtered_matrix.h5ad")
    read = io.read_counts(tmp_path / "S1_filtered_matrix.h5ad")
    np.testing.assert_array_equal(dense(read), dense(counts))
    assert list(read.var["gene_symbols"]) == list(counts.var_names)
    assert (read.obs["sample"] == "S1").all()


def test_10x_h5(counts, tmp_path):
    path = write_10x_h5(counts, tmp_path / "filtered_feature_bc_matrix.h5")
    assert io.detect_format(path) == "10x_h5"
    read = io.read_counts(path)
    assert_same_counts(read, counts)
    assert read.var["gene_ids"].iloc[0] == "ENSG00000000000"


@pytest.mark.parametrize("layout", ["v3", "legacy", "starsolo"])
def test_10x_mtx_folder(counts, tmp_path, layout):
    folder = write_mtx_folder(counts, tmp_path / "filtered_feature_bc_matrix", layout=layout)
    assert io.detect_format(folder) == "10x_mtx"
    assert_same_counts(io.read_counts(folder), counts)


@pytest.mark.parametrize("name, sep", [("c.csv", ","), ("c.tsv", "\t"), ("c.tsv.gz", "\t"), ("c.txt", "\t")])
def test_tables_cells_by_genes(counts, tmp_path, name, sep):
    table = pd.DataFrame(dense(counts).astype(int), index=counts.obs_names, columns=counts.var_names)
    table.to_csv(tmp_path / name, sep=sep)
    assert_same_counts(io.read_counts(tmp_path / name), counts)


def test_gzipped_table_without_gz_suffix(counts, tmp_path):
    table = pd.DataFrame(dense(counts).astype(int), index=counts.obs_names, columns=counts.var_names)
    table.to_csv(tmp_path / "c.csv", compression="gzip")
    assert_same_counts(io.read_counts(tmp_path / "c.csv"), counts)


def test_table_genes_by_cells_needs_transpose(counts, tmp_path):
    table = pd.DataFrame(dense(counts).T.astype(int), index=counts.var_names, columns=counts.obs_names)
    table.to_csv(tmp_path / "genes_by_cells.csv")
    with pytest.raises(ScdefrError, match="genes x cells.*--transpose"):
        io.read_counts(tmp_path / "genes_by_cells.csv")
    assert_same_counts(io.read_counts(tmp_path / "genes_by_cells.csv", transpose=True), counts)


@pytest.mark.parametrize("csr", [True, False])
def test_paper_hdf5_layout(counts, tmp_path, csr):
    path = write_paper_h5(counts, tmp_path / "data.h5", csr=csr)
    assert io.detect_format(path) == "paper_h5"
    read = io.read_counts(path)
    assert_same_counts(read, counts)
    assert list(read.obs["cell_type1"]) == list(counts.obs["cell_type"].astype(str))


def test_scdeepcluster_xy_layout(counts, tmp_path):
    with h5py.File(tmp_path / "x_y.h5", "w") as f:
        f["X"] = dense(counts)
        f["Y"] = counts.obs["cell_type"].cat.codes.to_numpy().astype(float)  # scDCC stores labels as floats
    assert io.detect_format(tmp_path / "x_y.h5") == "xy_h5"
    read = io.read_counts(tmp_path / "x_y.h5")
    np.testing.assert_array_equal(dense(read), dense(counts))
    assert read.obs["Y"].nunique() == counts.obs["cell_type"].nunique()
    assert read.obs_names.is_unique and read.var_names.is_unique


def test_scdeepcluster_xy_layout_with_wrong_label_count(counts, tmp_path):
    with h5py.File(tmp_path / "x_y.h5", "w") as f:
        f["X"] = dense(counts)
        f["Y"] = np.zeros(counts.n_obs - 1)
    with pytest.raises(ScdefrError, match="Y holds .* labels for the .* cells of X"):
        io.read_counts(tmp_path / "x_y.h5")


def test_duplicate_gene_names_made_unique(counts, tmp_path):
    table = pd.DataFrame(dense(counts).astype(int), index=counts.obs_names, columns=["G"] * counts.n_vars)
    table.to_csv(tmp_path / "dup.csv")
    read = io.read_counts(tmp_path / "dup.csv")
    assert read.var_names.is_unique and read.n_vars == counts.n_vars


@pytest.mark.parametrize(
    "rows, columns, expected",
    [
        ([f"Gene{i}" for i in range(2000)], [f"AAACCTGAGC{i:04d}" for i in range(50)], True),  # barcodes across
        ([f"ENSG{i:011d}" for i in range(100)], [f"s{i}" for i in range(100)], True),  # Ensembl ids down
        ([f"Gene{i}" for i in range(3000)], [f"s{i}" for i in range(100)], True),  # tall, symbols down
        ([f"AAACCTGAGC{i:04d}-1" for i in range(3000)], [f"Gene{i}" for i in range(100)], False),
        ([f"cell_{i}" for i in range(50)], [f"Gene{i}" for i in range(2000)], False),
    ],
)
def test_genes_by_cells_heuristic(rows, columns, expected):
    assert _looks_genes_by_cells(pd.Index(rows), pd.Index(columns)) is expected


# -- bad inputs ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ScdefrError, match="input not found"):
        io.read_counts(tmp_path / "nope.h5ad")


def test_not_hdf5_with_h5ad_name(tmp_path):
    (tmp_path / "bad.h5ad").write_bytes(b"this is not an hdf5 file at all")
    with pytest.raises(ScdefrError, match="not an HDF5 file"):
        io.read_counts(tmp_path / "bad.h5ad")


def test_truncated_h5ad(counts, tmp_path):
    counts.write_h5ad(tmp_path / "c.h5ad")
    data = (tmp_path / "c.h5ad").read_bytes()
    (tmp_path / "cut.h5ad").write_bytes(data[: len(data) // 3])
    with pytest.raises(ScdefrError, match="cannot read"):
        io.read_counts(tmp_path / "cut.h5ad")


def test_unknown_extension(tmp_path):
    (tmp_path / "counts.xlsx").write_bytes(b"PK\x03\x04 spreadsheet")
    with pytest.raises(ScdefrError, match="unknown input format"):
        io.read_counts(tmp_path / "counts.xlsx")


def test_unknown_hdf5_layout(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    with pytest.raises(ScdefrError, match="unknown HDF5 layout.*something"):
        io.read_counts(tmp_path / "other.h5")


def test_folder_without_matrix(tmp_path):
    with pytest.raises(ScdefrError, match="no matrix.mtx"):
        io.read_counts(tmp_path)


def test_empty_table(tmp_path):
    (tmp_path / "empty.csv").write_text("cell,GeneA,GeneB\n")
    with pytest.raises(ScdefrError, match="empty"):
        io.read_counts(tmp_path / "empty.csv")


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ScdefrError, match="empty"):
        io.read_counts(tmp_path / "empty.csv")


def test_non_numeric_table(tmp_path):
    (tmp_path / "t.csv").write_text("cell,GeneA,label\nc1,1,B\nc2,0,T\n")
    with pytest.raises(ScdefrError, match="non-numeric column.*label"):
        io.read_counts(tmp_path / "t.csv")


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_duplicate_cell_ids(counts, tmp_path):
    table = pd.DataFrame(
        dense(counts).astype(int), index=["AAACCTGAGCAAGTTC-1"] * counts.n_obs, columns=counts.var_names
    )
    table.to_csv(tmp_path / "dup.csv")
    with pytest.raises(ScdefrError, match="duplicate cell id"):
        io.read_counts(tmp_path / "dup.csv")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m - 3, "negative values"),
        (lambda m: m * 1.5, "non-integer"),
        (lambda m: np.where(m > 2, np.nan, m), "NaN"),
        (lambda m: np.where(m > 2, np.inf, m), "infinite"),
        (lambda m: np.log1p(m), "log-transformed"),
        (lambda m: m / m.sum(axis=1, keepdims=True).clip(1) * 1e4, "normalised"),
    ],
)
def test_not_raw_counts(counts, tmp_path, change, message):
    bad = counts.copy()
    bad.X = sparse.csr_matrix(change(dense(counts)).astype(np.float32))
    bad.write_h5ad(tmp_path / "bad.h5ad")
    with pytest.raises(ScdefrError, match=message):
        io.read_counts(tmp_path / "bad.h5ad")


def test_uns_log1p_marker_caught_even_if_values_look_integer(counts, tmp_path):
    marked = counts.copy()
    marked.uns["log1p"] = {"base": None}
    marked.write_h5ad(tmp_path / "m.h5ad")
    with pytest.raises(ScdefrError, match="log-transformed"):
        io.read_counts(tmp_path / "m.h5ad")


def test_transpose_only_for_tables(counts, tmp_path):
    counts.write_h5ad(tmp_path / "c.h5ad")
    with pytest.raises(ScdefrError, match="--transpose applies to csv/tsv"):
        io.read_counts(tmp_path / "c.h5ad", transpose=True)


def test_read_step_h5ad_checks_producer(counts, tmp_path):
    counts.write_h5ad(tmp_path / "c.h5ad")
    with pytest.raises(ScdefrError, match=r"no uns\['scdefr_qc'\].*scdefr qc"):
        io.read_step_h5ad(tmp_path / "c.h5ad", require_uns="scdefr_qc", made_by="scdefr qc")
    with pytest.raises(ScdefrError, match="input not found"):
        io.read_step_h5ad(tmp_path / "missing.h5ad")


# -- a real dataset ----------------------------------------------------------------------------

DATASETS = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


@pytest.mark.skipif(not (DATASETS / "cite_pbmc_top2000.h5ad").exists(), reason="shared datasets absent")
def test_real_dataset_reads_as_raw_counts():
    adata = io.read_counts(DATASETS / "cite_pbmc_top2000.h5ad")
    assert adata.shape == (3762, 2000)
    assert adata.X.dtype == np.float32
    assert adata.obs["cell_type"].nunique() == 12


@pytest.mark.parametrize("compression, expected", [("gzip", ("gzip", 1)), ("none", (None, None))])
def test_steps_write_h5ad_compressed_as_asked_and_it_reads_back(counts, tmp_path, compression, expected):
    """gzip is level 1, not h5py's default 4: 30% less time writing 100,000 cells (BENCHMARKS.md, round 9)."""
    from scdefr._files.h5ad import write_h5ad

    path = write_h5ad(counts, tmp_path / "written.h5ad", compression=compression)
    with h5py.File(path) as handle:
        arrays = []
        handle.visititems(
            lambda name, item: arrays.append(item) if isinstance(item, h5py.Dataset) and item.size > 1 else None
        )
        assert arrays and {(item.compression, item.compression_opts) for item in arrays} == {expected}
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(dense(back), dense(counts))


def test_an_unknown_compression_is_refused_before_writing(counts, tmp_path):
    from scdefr._files.h5ad import write_h5ad

    with pytest.raises(ScdefrError, match="compression must be one of gzip, none"):
        write_h5ad(counts, tmp_path / "written.h5ad", compression="zstd")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_matrix_stored_as_asked_is_carried_as_stored(tmp_path, compression):
    """A carried matrix already compressed as the step writes is copied chunk by chunk as stored
    (its chunking shows it); one stored otherwise is rewritten with the step's compression."""
    import h5py

    from scdefr._files import h5ad

    matrix = sparse.random(60, 40, density=0.3, format="csr", dtype=np.float32, random_state=0)
    stored = ad.AnnData(matrix)
    stored.layers["counts"] = matrix.copy()
    stored.write_h5ad(tmp_path / "in.h5ad", compression="gzip", compression_opts=1)
    with h5py.File(tmp_path / "in.h5ad", "a") as handle:  # a chunking no writer would pick
        del handle["layers/counts/data"]
        handle.create_dataset(
            "layers/counts/data", data=matrix.data, chunks=(7,), compression="gzip", compression_opts=1
        )
    read = io.read_step_h5ad(tmp_path / "in.h5ad", leave_on_disk=("layers/counts",))
    h5ad.write_h5ad(
        read, tmp_path / "out.h5ad", compression=compression, carry=(tmp_path / "in.h5ad", ("layers/counts",))
    )

    assert (ad.read_h5ad(tmp_path / "out.h5ad").layers["counts"] != matrix).nnz == 0
    with h5py.File(tmp_path / "out.h5ad", "r") as handle:
        data = handle["layers/counts/data"]
        if compression == "gzip":
            assert data.chunks == (7,) and data.compression_opts == 1
        else:
            assert data.compression is None and data.chunks != (7,)
        assert handle["layers/counts"].attrs["encoding-type"] == "csr_matrix"


def test_a_step_can_leave_matrices_on_disk_and_carry_them_over(tmp_path, monkeypatch):
    """read_step_h5ad(leave_on_disk=...) reads neither a dense X nor a named layer, keeps the
    others, and write_h5ad(carry=...) copies both back, slice by slice, with their encodings."""
    from scdefr._files import h5ad

    monkeypatch.setattr(h5ad, "COPY_ELEMENTS", 50)
    rng = np.random.default_rng(0)
    stored = ad.AnnData(rng.poisson(1.0, size=(40, 30)).astype(np.float32))
    stored.layers["counts"] = sparse.csr_matrix(stored.X)
    stored.layers["spliced"] = sparse.csr_matrix(stored.X * 2)
    stored.uns["scdefr_qc"] = {"ok": 1}
    stored.write_h5ad(tmp_path / "in.h5ad")
    carried = ("X", "layers/counts")

    read = io.read_step_h5ad(tmp_path / "in.h5ad", require_uns="scdefr_qc", leave_on_disk=carried)
    assert read.X is None and list(read.layers) == ["spliced"] and read.shape == (40, 30)
    read.obs["added"] = 1
    h5ad.write_h5ad(read, tmp_path / "out.h5ad", carry=(tmp_path / "in.h5ad", carried))
    written = ad.read_h5ad(tmp_path / "out.h5ad")
    np.testing.assert_array_equal(written.X, stored.X)
    assert (written.layers["counts"] != stored.layers["counts"]).nnz == 0
    assert (written.layers["spliced"] != stored.layers["spliced"]).nnz == 0
    assert (written.obs["added"] == 1).all()

"""``scdefr qc`` and ``scdefr graph`` end to end: outputs beside --output, one-line errors, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from builders import make_counts
from scipy import sparse

from scdefr import cli
from scdefr.cli import qc as qc_cli


@pytest.fixture(autouse=True)
def only_qc_and_graph(monkeypatch):
    """The dispatcher as shipped, limited to the two steps under test (others may not exist yet)."""
    monkeypatch.setattr(cli, "COMMANDS", ("qc", "graph"))


def run(*argv: str) -> int:
    return cli.main([*map(str, argv), "--quiet"])


@pytest.fixture
def counts_h5ad(tmp_path) -> Path:
    path = tmp_path / "in" / "counts.h5ad"
    path.parent.mkdir()
    make_counts().write_h5ad(path)
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_qc_then_graph(counts_h5ad, tmp_path):
    out = tmp_path / "out"
    assert run("qc", "--input", counts_h5ad, "--output", out / "S.qc.h5ad", "--n-top-genes", 100) == 0
    assert files_in(out) == ["S.qc.h5ad", "S.qc.png", "S.qc_summary.json"]
    qced = ad.read_h5ad(out / "S.qc.h5ad")
    assert qced.n_vars == 100 and "counts" in qced.layers and "size_factors" in qced.obs
    assert list(qced.obs["cell_type"]) == list(make_counts().obs.loc[qced.obs_names, "cell_type"])
    summary = json.loads((out / "S.qc_summary.json").read_text())
    assert summary["input"] == {"cells": 120, "genes": 150}
    assert summary["output"] == {"cells": qced.n_obs, "genes": 100}
    assert summary["params"]["n_top_genes"] == 100
    assert list(qced.uns["scdefr_qc"]["summary"]["step_order"]) == summary["step_order"]
    assert (out / "S.qc.png").read_bytes()[:4] == b"\x89PNG"

    assert (
        run(
            "graph",
            "--input",
            out / "S.qc.h5ad",
            "--output",
            out / "S.graph.h5ad",
            "--n-pcs",
            10,
            "--n-neighbors",
            8,
            "--seed",
            4,
        )
        == 0
    )
    graphed = ad.read_h5ad(out / "S.graph.h5ad")
    adjacency = graphed.obsp["scdefr_adjacency"]
    assert adjacency.dtype == np.float32 and (adjacency != adjacency.T).nnz == 0
    assert graphed.uns["scdefr_graph"]["params"] == {
        "n_pcs": 10,
        "n_pcs_requested": 10,
        "n_neighbors": 8,
        "knn_method": "auto",
        "knn_method_used": "exact",
        "graph_normalization": "symmetric",
        "preset": "none",
        "seed": 4,
    }
    assert graphed.uns["scdefr_graph"]["degree"]["min"] >= 7
    assert "scdefr_qc" in graphed.uns and "counts" in graphed.layers  # graph adds to what qc wrote


def test_summary_and_plot_paths_can_be_chosen(counts_h5ad, tmp_path):
    assert (
        run(
            "qc",
            "--input",
            counts_h5ad,
            "--output",
            tmp_path / "a" / "x.h5ad",
            "--summary",
            tmp_path / "b" / "sum.json",
            "--plot",
            tmp_path / "c" / "p.png",
        )
        == 0
    )
    assert files_in(tmp_path / "a") == ["x.h5ad"]
    assert (tmp_path / "b" / "sum.json").exists() and (tmp_path / "c" / "p.png").exists()


def test_side_paths():
    assert qc_cli.side_paths("d/S.qc.h5ad") == (Path("d/S.qc_summary.json"), Path("d/S.qc.png"))
    assert qc_cli.side_paths("S.h5ad") == (Path("S.qc_summary.json"), Path("S.qc.png"))


def test_csv_genes_by_cells_with_transpose(tmp_path):
    counts = make_counts()
    table = pd.DataFrame(
        counts.X.toarray().T.astype(int),
        index=counts.var_names,
        columns=[f"AAACCTGAGC{i:04d}-1" for i in range(counts.n_obs)],
    )
    table.to_csv(tmp_path / "genes_by_cells.csv")
    assert (
        run("qc", "--input", tmp_path / "genes_by_cells.csv", "--output", tmp_path / "o" / "S.qc.h5ad", "--transpose")
        == 0
    )
    assert ad.read_h5ad(tmp_path / "o" / "S.qc.h5ad").n_obs == counts.n_obs


# -- bad input: one line on stderr, exit 2, nothing left in the output folder -----------------


def write_csv(path: Path, matrix: np.ndarray, cells=None) -> Path:
    cells = cells if cells is not None else [f"cell{i}" for i in range(matrix.shape[0])]
    pd.DataFrame(matrix, index=cells, columns=[f"Gene{j}" for j in range(matrix.shape[1])]).to_csv(path)
    return path


def bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (input path, extra options, expected message fragment)."""
    good = make_counts().X.toarray()
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "corrupt.h5ad").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    (tmp_path / "counts.parquet").write_bytes(b"PAR1....")
    (tmp_path / "empty.csv").write_text("cell,Gene0,Gene1\n")
    nan = good.copy()
    nan[0, 0] = np.nan
    genes_by_cells = pd.DataFrame(
        good.T.astype(int),
        index=[f"Gene{i}" for i in range(good.shape[1])],
        columns=[f"AAACCTGAGC{i:04d}-1" for i in range(good.shape[0])],
    )
    genes_by_cells.to_csv(tmp_path / "gxc.csv")
    return {
        "missing": (tmp_path / "nope.h5ad", [], "input not found"),
        "corrupt": (tmp_path / "corrupt.h5ad", [], "cannot read"),
        "unknown format": (tmp_path / "counts.parquet", [], "unknown input format"),
        "empty": (tmp_path / "empty.csv", [], "empty"),
        "negative": (write_csv(tmp_path / "neg.csv", good - 5), [], "negative"),
        "non-integer": (write_csv(tmp_path / "frac.csv", good * 1.37 + 50), [], "non-integer"),
        "nan": (write_csv(tmp_path / "nan.csv", nan), [], "NaN"),
        "log": (write_csv(tmp_path / "log.csv", np.log1p(good)), [], "log-transformed"),
        "duplicate ids": (write_csv(tmp_path / "dup.csv", good, cells=["c1"] * good.shape[0]), [], "duplicate cell id"),
        "all filtered": (write_csv(tmp_path / "ok.csv", good), ["--min-genes", "1000"], "all 120 cells were filtered"),
        "genes x cells": (tmp_path / "gxc.csv", [], "--transpose"),
    }


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_bad_inputs_fail_cleanly(tmp_path, capsys):
    cases = bad_inputs(tmp_path / "inputs")
    for name, (path, options, message) in cases.items():
        out = tmp_path / "out"
        code = run("qc", "--input", path, "--output", out / "S.qc.h5ad", *options)
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert err.startswith("scdefr qc: error: ") and "\n" not in err, (name, err)
        assert message in err, (name, err)
        assert files_in(out) == [], name


def test_graph_bad_inputs(counts_h5ad, tmp_path, capsys):
    out = tmp_path / "out"
    # not a qc output
    assert run("graph", "--input", counts_h5ad, "--output", out / "S.graph.h5ad") == 2
    assert "uns['scdefr_qc']" in capsys.readouterr().err
    # missing and corrupt
    assert run("graph", "--input", tmp_path / "nope.h5ad", "--output", out / "S.graph.h5ad") == 2
    assert "input not found" in capsys.readouterr().err
    (tmp_path / "bad.h5ad").write_bytes(b"garbage")
    assert run("graph", "--input", tmp_path / "bad.h5ad", "--output", out / "S.graph.h5ad") == 2
    assert "cannot read" in capsys.readouterr().err
    # fewer cells than neighbours
    small = make_counts(n_cells=12)
    small.write_h5ad(tmp_path / "small.h5ad")
    assert run("qc", "--input", tmp_path / "small.h5ad", "--output", tmp_path / "q" / "small.qc.h5ad") == 0
    assert (
        run("graph", "--input", tmp_path / "q" / "small.qc.h5ad", "--output", out / "S.graph.h5ad", "--n-neighbors", 15)
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err == "scdefr graph: error: only 12 cells, fewer than n_neighbors (--n-neighbors) 15 + 1: lower it"
    assert files_in(out) == []


@pytest.mark.parametrize("compression, filter_name", [("gzip", "gzip"), ("none", None)])
def test_graph_carries_the_counts_from_file_to_file(counts_h5ad, tmp_path, monkeypatch, compression, filter_name):
    """The graph step reads its input without the raw counts and copies them into its output (in
    slices; here of 64 values), compressed as asked, equal to what qc wrote."""
    import h5py

    from scdefr._files import h5ad

    monkeypatch.setattr(h5ad, "COPY_ELEMENTS", 64)
    out = tmp_path / "out"
    assert run("qc", "--input", counts_h5ad, "--output", out / "S.qc.h5ad", "--n-top-genes", 100) == 0
    assert (
        run(
            "graph",
            "--input",
            out / "S.qc.h5ad",
            "--output",
            out / "S.graph.h5ad",
            "--n-pcs",
            10,
            "--compression",
            compression,
        )
        == 0
    )
    qced, graphed = ad.read_h5ad(out / "S.qc.h5ad"), ad.read_h5ad(out / "S.graph.h5ad")
    counts = graphed.layers["counts"]
    assert sparse.issparse(counts) and counts.dtype == np.float32
    assert (counts != qced.layers["counts"]).nnz == 0 and (graphed.X != qced.X).nnz == 0
    with h5py.File(out / "S.graph.h5ad", "r") as handle:
        assert handle["layers/counts/data"].compression == filter_name
        assert handle["layers/counts"].attrs["encoding-type"] == "csr_matrix"

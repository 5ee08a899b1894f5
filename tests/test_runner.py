"""``scdefr run``: the whole chain on one machine, in the pipeline's output layout."""

import json
from functools import partial

import anndata as ad
import h5py
import pandas as pd
import pytest

from scdefr._files.h5ad import write_h5ad
from scdefr.cli import main
from scdefr.runner import STEPS, default_sample_name, layout
from scdefr.simulate import simulate_counts

FAST = [
    "--pretrain-epochs",
    "3",
    "--epochs",
    "2",
    "--hidden-dims",
    "32,8",
    "--n-pcs",
    "10",
    "--n-top-genes",
    "150",
    "--kmeans-n-init",
    "2",
    "--quiet",
]


@pytest.fixture(scope="module")
def counts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "tiny.h5ad"
    write_h5ad(simulate_counts(n_cells=300, n_genes=200, n_clusters=3, seed=0), path)
    return path


@pytest.fixture(scope="module")
def run_outdir(counts_file, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("results")
    code = main(
        [
            "run",
            "--input",
            str(counts_file),
            "--outdir",
            str(outdir),
            "--n-clusters",
            "3",
            "--label-key",
            "cell_type",
            "--seed",
            "1",
            *FAST,
        ]
    )
    assert code == 0
    return outdir


@pytest.mark.slow
def test_run_produces_the_whole_layout(run_outdir):
    root = run_outdir / "tiny"  # sample name from the input's file name
    expected = {
        "qc": ["tiny.qc.h5ad", "tiny.qc_summary.json", "tiny.qc.png"],
        "graph": ["tiny.graph.h5ad"],
        "train": ["tiny.trained.h5ad", "tiny.model.pt"],
        "export": [
            "tiny.h5ad",
            "tiny.clusters.csv",
            "tiny.embedding.csv",
            "tiny.metrics.json",
            "tiny.umap.png",
            "tiny.loss.png",
            "tiny.cluster_sizes.png",
            "tiny_mqc.tsv",
            "tiny_cluster_sizes_mqc.tsv",
            "tiny_umap_mqc.png",
            "tiny_loss_mqc.png",
        ],
    }
    assert sorted(p.name for p in root.iterdir()) == sorted(STEPS)
    for step, names in expected.items():
        assert sorted(p.name for p in (root / step).iterdir()) == sorted(names), step


@pytest.mark.slow
def test_run_results_are_consistent_across_steps(run_outdir):
    root = run_outdir / "tiny"
    qc = ad.read_h5ad(root / "qc" / "tiny.qc.h5ad", backed="r")
    final = ad.read_h5ad(root / "export" / "tiny.h5ad")
    clusters = pd.read_csv(root / "export" / "tiny.clusters.csv", dtype={"cluster": str})
    result = json.loads((root / "export" / "tiny.metrics.json").read_text())
    # every cell that passed QC is clustered exactly once, into the K that was asked for
    assert list(clusters["cell_id"]) == list(qc.obs_names) == list(final.obs_names)
    assert result["n_clusters_requested"] == 3 and clusters["cluster"].nunique() <= 3
    assert result["n_cells"] == final.n_obs
    # the loss history of both phases made it through, with the epochs asked for
    history = final.uns["scdefr"]["history"]
    assert len(history["pretrain"]["loss"]) == 3 and len(history["joint"]["loss"]) == 2
    assert {"X_scdefr", "scdefr_soft", "X_umap", "X_pca"} <= set(final.obsm)
    assert "counts" in final.layers and "scdefr_adjacency" in final.obsp
    assert 0.0 <= result["accuracy"] <= 1.0 and "ari" in result


@pytest.mark.slow
def test_runner_matches_the_separate_steps(run_outdir, counts_file, tmp_path):
    """Calling the four commands one by one (as the pipeline does) gives the same clusters, here with
    uncompressed files, which every step writes when asked."""

    step_dir = tmp_path / "steps"
    opts = {
        "qc": ["--n-top-genes", "150"],
        "graph": ["--n-pcs", "10"],
        "train": [
            "--n-clusters",
            "3",
            "--pretrain-epochs",
            "3",
            "--epochs",
            "2",
            "--hidden-dims",
            "32,8",
            "--kmeans-n-init",
            "2",
        ],
    }
    common = ["--seed", "1", "--quiet", "--compression", "none"]
    assert main(["qc", "--input", str(counts_file), "--output", str(step_dir / "s.qc.h5ad"), *opts["qc"], *common]) == 0
    assert (
        main(
            [
                "graph",
                "--input",
                str(step_dir / "s.qc.h5ad"),
                "--output",
                str(step_dir / "s.graph.h5ad"),
                *opts["graph"],
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--input",
                str(step_dir / "s.graph.h5ad"),
                "--output",
                str(step_dir / "s.trained.h5ad"),
                *opts["train"],
                *common,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "export",
                "--input",
                str(step_dir / "s.trained.h5ad"),
                "--outdir",
                str(step_dir / "export"),
                "--label-key",
                "cell_type",
                *common,
            ]
        )
        == 0
    )
    separate = pd.read_csv(step_dir / "export" / "s.clusters.csv", dtype={"cluster": str})
    together = pd.read_csv(run_outdir / "tiny" / "export" / "tiny.clusters.csv", dtype={"cluster": str})
    # Same cells and clusters; probabilities to float32 precision (thread pools sized by earlier
    # tests in this process can change the order of floating-point sums).
    pd.testing.assert_frame_equal(separate, together, check_exact=False, rtol=1e-4)
    for written in ("s.qc.h5ad", "s.graph.h5ad", "s.trained.h5ad", "export/s.h5ad"):
        with h5py.File(step_dir / written) as handle:
            compressions = set()
            handle.visititems(partial(_add_compression, compressions))
        assert compressions == {None}, written


def _add_compression(compressions: set, name: str, item) -> None:
    if isinstance(item, h5py.Dataset):
        compressions.add(item.compression)


def test_default_sample_name_and_layout(tmp_path):
    assert default_sample_name("data/pbmc3k.h5ad") == "pbmc3k"
    assert default_sample_name("counts.csv.gz") == "counts"
    assert default_sample_name("filtered_feature_bc_matrix") == "filtered_feature_bc_matrix"
    assert layout(tmp_path, "s")["train"] == tmp_path / "s" / "train"


def test_run_accepts_every_step_option():
    from scdefr.cli import build_parser

    args = build_parser().parse_args(
        [
            "run",
            "--input",
            "x",
            "--outdir",
            "o",
            "--min-genes",
            "5",
            "--n-neighbors",
            "7",
            "--epochs",
            "4",
            "--label-key",
            "cell_type",
            "--seed",
            "3",
            "--umap-max-cells",
            "500",
            "--compression",
            "none",
        ]
    )
    assert (args.min_genes, args.n_neighbors, args.epochs, args.label_key, args.seed) == (5, 7, 4, "cell_type", 3)
    assert (args.umap_max_cells, args.compression) == (500, "none")


@pytest.mark.parametrize(
    "case", ["missing_input", "bad_sample_name", "not_counts", "outdir_is_a_file", "label_key_absent"]
)
def test_run_bad_input_exits_2_in_one_line(case, counts_file, tmp_path, capsys):
    outdir = tmp_path / "out"
    argv = ["run", "--input", str(counts_file), "--outdir", str(outdir), *FAST]
    if case == "missing_input":
        argv[2] = str(tmp_path / "absent.h5ad")
    elif case == "bad_sample_name":
        argv += ["--sample", "../escape"]
    elif case == "not_counts":
        bad = simulate_counts(50, 40, 2)
        bad.X = bad.X * 0.5  # fractional values: not raw counts
        write_h5ad(bad, tmp_path / "bad.h5ad")
        argv[2] = str(tmp_path / "bad.h5ad")
    elif case == "outdir_is_a_file":
        outdir.write_text("a file")
        argv[4] = str(outdir / "sub")
    else:
        argv += ["--label-key", "no_such_column", "--n-clusters", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scdefr run: error:") and "\n" not in err, err
    if case in ("missing_input", "bad_sample_name", "not_counts"):
        leftovers = [p for p in outdir.rglob("*") if p.is_file()] if outdir.is_dir() else []
        assert leftovers == []

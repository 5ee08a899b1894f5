"""The maintained benchmark scripts (benchmarks/), each on a small input: the tables they record and
summarise, the figures they read from ``scdefr run``'s log, and what each measurement compares.
The benchmarks themselves are not run here (they take hours)."""

from __future__ import annotations

import csv
import importlib
import sys

import pytest


@pytest.fixture
def benchmarks(monkeypatch, tmp_path, repo_root):
    """The benchmarks' shared module, writing its tables into a temporary folder. The scripts a
    test imports are forgotten afterwards: they bind the results folder when imported."""
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    common = importlib.import_module("_common")
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    before = set(sys.modules)
    yield common
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(repo_root / "benchmarks")):
            del sys.modules[name]


def read_table(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_append_rows_keeps_a_new_column_and_the_old_rows(benchmarks, tmp_path):
    benchmarks.append_rows("t.csv", [{"tag": "a", "wall_s": 1.5}])
    benchmarks.append_rows("t.csv", [{"tag": "b", "wall_s": 2.0}])
    benchmarks.append_rows("t.csv", [{"tag": "c", "wall_s": 3.0, "run_ari": 0.9}])

    rows = read_table(tmp_path / "t.csv")
    assert [row["tag"] for row in rows] == ["a", "b", "c"]
    assert [row["run_ari"] for row in rows] == ["", "", "0.9"]
    assert rows[0]["wall_s"] == "1.5"
    assert not list(tmp_path.glob("*.partial"))


def test_scaling_reads_step_times_and_clusters_from_the_run_log(benchmarks):
    scaling = importlib.import_module("scaling")
    log = "\n".join(
        [
            "scdefr.runner: [sim5000] qc done in 4.1 s",
            "scdefr.training: pretrain epoch 60/60: loss 1.5 (reconstruction 1.0, zinb 0.9) [120.0s]",
            "scdefr.runner: [sim5000] graph done in 12.5 s",
            "scdefr.runner: [sim5000] train done in 300.2 s",
            "scdefr.export: sim5000: 4990 cells in 9 clusters, silhouette 0.66, ARI 0.859, NMI 0.884, accuracy 0.83",
            "scdefr.runner: [sim5000] export done in 20.0 s",
        ]
    )

    assert scaling.run_steps(log) == {
        "run_qc_s": 4.1,
        "run_graph_s": 12.5,
        "run_train_s": 300.2,
        "run_export_s": 20.0,
        "run_n_clusters_found": 9,
        "run_ari": 0.859,
    }
    assert scaling.epoch_seconds(log) == {"pretrain_epochs": 60, "pretrain_s_per_epoch": 2.0}


def test_scaling_times_a_step_and_reads_its_peak_memory(benchmarks, tmp_path):
    """The timer needs no GNU time (the GPU machines have none): wall time, the child's own peak RSS,
    and its log kept in a file."""
    scaling = importlib.import_module("scaling")
    allocate = "import numpy, sys; a = numpy.ones(200 * 2**20 // 8); print('held', file=sys.stderr)"
    measured = scaling.timed([sys.executable, "-c", allocate], tmp_path / "step.log")
    assert measured["peak_rss_mb"] >= 200 and measured["wall_s"] > 0 and "held" in measured["log"]
    assert (tmp_path / "step.log").read_text() == measured["log"]
    with pytest.raises(RuntimeError, match="bad input"):
        scaling.timed([sys.executable, "-c", "import sys; sys.exit('bad input')"], tmp_path / "failed.log")
    assert scaling.gpu_peak("scdefr.training: peak GPU memory: 3.25 GB") == {"gpu_peak_gb": 3.25}
    assert scaling.gpu_peak("no GPU here") == {}


def test_partition_cost_counts_the_edges_parts_and_batches_keep(benchmarks):
    """On a chain of 8 cells cut into halves, one of the 7 edges crosses the cut; both modes
    are measured whatever the size."""
    from types import SimpleNamespace

    import numpy as np
    import scipy.sparse as sp

    cost = importlib.import_module("partition_cost")
    chain = sp.diags([np.ones(7), np.ones(7)], [-1, 1]).tocoo()
    assert cost.edges_kept(chain, np.repeat([0, 1], 4)) == pytest.approx(6 / 7)

    pca = np.repeat([[0.0, 0.0], [50.0, 0.0]], 4, axis=0) + np.arange(8)[:, None] * 0.01
    data = SimpleNamespace(name="chain", n_cells=8, n_genes=2, x=None, pca=pca, adjacency=chain)
    for mode in ("flat", "two_level"):
        row = cost.measure(data, mode, batch_size=4, seed=0)
        assert row["n_parts"] == 8 and row["edges_in_part"] == 0.0  # 8 parts of one cell
        assert 0.0 <= row["edges_in_batch"] <= 1.0


def test_label_rules_smoothing_recovers_flipped_cells_and_is_summarised(benchmarks, tmp_path):
    """On a graph of planted types whose Q points 15% of cells to a wrong cluster, the package's
    smoothing (q_walk) puts them back where argmax Q does not; the summary reads the rules' rows."""
    import numpy as np
    from builders import make_graph_adata

    from scdefr import metrics

    adata = make_graph_adata(n_cells=200, n_types=4)
    truth = adata.obs["cell_type"].cat.codes.to_numpy()
    rng = np.random.default_rng(0)
    assigned = np.where(rng.random(truth.size) < 0.15, rng.integers(0, 4, truth.size), truth)
    q = np.full((truth.size, 4), 0.1, dtype=np.float32)
    q[np.arange(truth.size), assigned] = 0.7
    z = np.eye(4)[truth] * 10 + rng.normal(size=(truth.size, 4))
    found = importlib.import_module("label_rules").rules(adata, z, q, seed=0)
    np.testing.assert_array_equal(found["argmax_q"], assigned)
    assert metrics.adjusted_rand_index(truth, found["q_walk4"]) > metrics.adjusted_rand_index(truth, assigned) + 0.2
    assert {"q_sym4", "kmeans_z", "leiden_z_k"} <= set(found)

    rows = [
        {"tag": "t", "dataset": "d", "seed": seed, "rule": rule, "ari": ari}
        for seed, shift in ((0, 0.0), (1, 0.1))
        for rule, ari in (("argmax_q", 0.5 + shift), ("q_walk4", 0.6 + shift))
    ]
    benchmarks.append_rows("label_rules.csv", rows)
    benchmarks.append_rows(
        "baselines.csv",
        [
            {"dataset": "d", "seed": seed, "method": "leiden_default", "ari": ari}
            for seed, ari in ((0, 0.55), (1, 0.55), (3, 0.9))
        ],
    )  # seed 3: no run
    summarise = importlib.import_module("summarise")
    table = summarise.label_rules_table(["t"], ["argmax_q", "q_walk4"])
    assert "| d | 2 | 0.550 ± 0.071 | 0.650 ± 0.071 | 0.550 |" in table

    # seeds run apart under another tag pool with the first; the Leiden bar follows the seeds
    benchmarks.append_rows("label_rules.csv", [{"tag": "t3", "dataset": "d", "seed": 3, "rule": "q_walk4", "ari": 0.8}])
    pooled = summarise.label_rules_table(["t", "t3"], ["q_walk4"])
    assert "| d | 3 | 0.700 ± 0.100 | 0.667 |" in pooled
    assert "| d | 1 | 0.600 (1 seed) | 0.550 |" in summarise.label_rules_table(["t", "t3"], ["q_walk4"], seeds=[0])


def test_quality_table_keeps_the_seeds_asked_for_and_the_baselines_of_those_seeds(benchmarks):
    """Runs of one tag over five seeds summarised over three: the mean, sd and the best baseline are
    those of seeds 0-2 only, the true-k and auto rows apart."""
    rows = [
        {
            "tag": "t",
            "dataset": "d",
            "seed": seed,
            "k_mode": k_mode,
            "true_k": 4,
            "n_clusters": 4,
            "ari": ari,
            "nmi": 0.5,
            "acc": 0.5,
            "kmeans_z_ari": 0.4,
            "train_s": 10.0,
        }
        for k_mode, shift in (("true", 0.0), ("auto", 0.2))
        for seed, ari in enumerate((0.5, 0.6, 0.7, 0.1, 0.1))
        for ari in [ari + shift]
    ]
    benchmarks.append_rows("scdefr_quality.csv", rows)
    benchmarks.append_rows(
        "baselines.csv",
        [
            {"dataset": "d", "seed": seed, "method": "kmeans_pca", "ari": ari}
            for seed, ari in enumerate((0.3, 0.3, 0.3, 0.9, 0.9))
        ],
    )
    summarise = importlib.import_module("summarise")
    table = summarise.quality_table(["t"], seeds=[0, 1, 2])
    assert "| d | t | true | 3 | 0.600 ± 0.100 |" in table and "0.300 (kmeans_pca) |" in table
    assert "| d | t | auto | 3 | 0.800 ± 0.100 |" in table
    every_seed = summarise.quality_table(["t"])
    assert "| d | t | true | 5 | 0.400 ± 0.283 |" in every_seed and "0.540 (kmeans_pca) |" in every_seed


def test_label_rules_hands_params_to_training_with_the_read_out_off_and_no_labels(benchmarks, tmp_path, monkeypatch):
    """``--param`` reaches ``tl.scdefr``; the script still trains with ``smoothing_steps=0`` (it scores
    read-outs itself), without the label column; a second run reads the cache instead of training,
    and other settings in the same cache folder train their own model."""
    import numpy as np
    from builders import make_graph_adata

    from scdefr import tl

    label_rules = importlib.import_module("label_rules")
    adata = make_graph_adata(n_cells=120, n_types=3)
    monkeypatch.setattr(label_rules.baselines, "preprocess", lambda name, seed: adata.copy())
    calls = []

    def fake_scdefr(view, **options):
        calls.append((set(view.obs.columns), options))
        view.obsm["X_scdefr"] = np.random.default_rng(0).normal(size=(view.n_obs, 2)).astype(np.float32)
        view.obsm["scdefr_soft"] = np.full((view.n_obs, 3), 1 / 3, dtype=np.float32)

    monkeypatch.setattr(tl, "scdefr", fake_scdefr)
    argv = [
        "--datasets",
        "d",
        "--seeds",
        "1",
        "--cache",
        str(tmp_path / "Q"),
        "--param",
        "lr=0.001",
        "--param",
        "smoothing_steps=4",
        "--tag",
        "t",
    ]
    label_rules.main(argv)
    label_rules.main(argv)

    ((columns, options),) = calls
    assert "cell_type" not in columns
    assert options == {"n_clusters": 3, "seed": 1, "lr": 0.001, "smoothing_steps": 0}
    label_rules.main([arg.replace("lr=0.001", "lr=0.003") for arg in argv])
    assert len(calls) == 2 and calls[1][1]["lr"] == 0.003
    rows = read_table(tmp_path / "label_rules.csv")
    rules = {row["rule"] for row in rows}
    assert rules >= {"argmax_q", "q_walk4"} and len(rows) == 3 * len(rules)  # every rule, each of the 3 runs


def test_attention_keys_compares_subsets_of_keys_with_every_cell_without_labels(benchmarks, tmp_path, monkeypatch):
    """The first row is the reference (every cell as a key); subsets of keys and the run without the
    term move z; each subset runs once per order; the model is loaded from a file without labels."""
    import torch
    from builders import make_graph_adata

    from scdefr.model import SCDEFR

    adata = make_graph_adata(n_cells=120, n_types=3)
    model = SCDEFR(adata.copy(), 3, seed=0, pretrain_epochs=2, epochs=1, hidden_dims=(16, 8, 4))
    model.fit()
    with torch.no_grad():
        model.module.alpha.fill_(0.5)  # a trained alpha this early is near 0; the term must matter here
    model.save(tmp_path / "m.model.pt")
    adata.write_h5ad(tmp_path / "g.h5ad")

    seen = []
    load = SCDEFR.load.__func__
    monkeypatch.setattr(
        SCDEFR, "load", classmethod(lambda cls, path, data: seen.append(set(data.obs)) or load(cls, path, data))
    )
    importlib.import_module("attention_keys").main(
        [
            str(tmp_path / "g.h5ad"),
            str(tmp_path / "m.model.pt"),
            "--keys",
            "40",
            "-1",
            "--orders",
            "2",
            "--label-key",
            "cell_type",
            "--threads",
            "1",
            "--tag",
            "t",
        ]
    )

    assert seen == [set(adata.obs) - {"cell_type"}]
    rows = read_table(tmp_path / "attention_keys.csv")
    assert [(row["keys"], row["order"]) for row in rows] == [("all", "0"), ("40", "0"), ("40", "1"), ("none", "0")]
    assert float(rows[0]["z_change"]) == 0 and float(rows[0]["ari_to_all_keys"]) == 1
    assert all(float(row["z_change"]) > 0 for row in rows[1:])
    assert rows[1]["z_change"] != rows[2]["z_change"]  # another order, another subset of keys
    assert all(0 <= float(row["ari_labels"]) <= 1 for row in rows)


def test_write_cost_writes_each_compression_and_reads_it_back(benchmarks, tmp_path):
    """One row per setting; level 4 packs at least as tight as level 1, and both beat no compression."""
    import anndata as ad
    import numpy as np

    counts = np.random.default_rng(0).poisson(0.5, size=(2000, 200)).astype(np.float32)
    ad.AnnData(counts).write_h5ad(tmp_path / "counts.h5ad")
    importlib.import_module("write_cost").main([str(tmp_path / "counts.h5ad"), "--repeats", "1"])
    rows = {row["setting"]: float(row["size_mb"]) for row in read_table(tmp_path / "write_cost.csv")}
    assert set(rows) == {"gzip4", "gzip1", "lzf", "none"}
    assert rows["gzip4"] <= rows["gzip1"] < rows["none"] and rows["lzf"] < rows["none"]
    assert list(tmp_path.glob("*.h5ad")) == [tmp_path / "counts.h5ad"]  # the copies are gone


def test_umap_cost_times_both_modes_and_scores_only_real_cells(benchmarks, tmp_path):
    """A size above the file's cells is made of noisy copies (timed, not scored); a subsampled
    layout of well separated clusters keeps each cell among its own cluster."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    cluster = rng.integers(4, size=600)
    embedding = (rng.normal(scale=8.0, size=(4, 16))[cluster] + rng.normal(size=(600, 16))).astype(np.float32)
    trained = ad.AnnData(
        obs=pd.DataFrame({"scdefr_cluster": pd.Categorical(cluster.astype(str))}, index=[f"c{i}" for i in range(600)]),
        obsm={"X_scdefr": embedding},
    )
    trained.write_h5ad(tmp_path / "t.h5ad")
    importlib.import_module("umap_cost").main(
        [str(tmp_path / "t.h5ad"), "--sizes", "600", "900", "--limits", "0", "300"]
    )
    rows = {(row["n_cells"], row["umap_max_cells"]): row for row in read_table(tmp_path / "umap_cost.csv")}
    assert set(rows) == {("600", "0"), ("600", "300"), ("900", "0"), ("900", "300")}
    assert rows[("600", "300")]["n_fitted"] == "300" and rows[("600", "0")]["n_fitted"] == "600"
    for limit in ("0", "300"):
        assert float(rows[("600", limit)]["same_cluster"]) > 0.98
        assert 0 < float(rows[("600", limit)]["kept_neighbours"]) <= 1
    assert rows[("900", "300")]["real_cells"] == "False" and rows[("900", "300")]["same_cluster"] == ""


def test_qc_memory_measures_qc_and_reads_in_fresh_processes(benchmarks, tmp_path):
    """A tiled input has tiles x the cells, under new names; each measurement reports a positive
    peak of its own process, and only the simulated base file is left behind."""
    import anndata as ad

    qc_memory = importlib.import_module("qc_memory")
    qc_memory.main(
        ["--workdir", str(tmp_path / "w"), "--cells", "300", "--genes", "400", "--tiles", "1", "2", "--cellxgene", "2"]
    )
    rows = read_table(tmp_path / "qc_memory.csv")
    assert [(row["step"], row["input"], row["n_cells"]) for row in rows] == [
        ("qc", "counts", "300"),
        ("qc", "counts", "600"),
        ("read", "cellxgene", "600"),
    ]
    assert all(0 < float(row["peak_gb"]) < 10 and float(row["seconds"]) > 0 for row in rows)
    assert [path.name for path in (tmp_path / "w").iterdir()] == ["sim300x400.h5ad"]
    tripled = ad.read_h5ad(qc_memory.tiled(tmp_path / "w" / "sim300x400.h5ad", 3, tmp_path))
    assert tripled.n_obs == 900 and tripled.obs_names.is_unique


FAKE_NVIDIA_SMI = """#!/bin/sh
case "$*" in
    *-l*) while sleep 1; do echo "2026/01/01 00:00:00.000, 0 MiB, 0 %"; done ;;
    *noheader*) echo "Fake GPU" ;;
    *) echo "name, memory.total [MiB], driver_version"; echo "Fake GPU, 0 MiB, 0" ;;
esac
"""


@pytest.mark.slow
def test_gpu_check_runs_detached_and_its_logs_are_collected(tmp_path, repo_root):
    """gpu_check.sh as a lent machine runs it (DEVICE=cpu, a stand-in nvidia-smi): started detached,
    it simulates in parts, runs the sweep and deletes each step's h5ad once the next step has read
    it; gpu_collect.sh waits for "done" and packs the logs without the h5ad."""
    import os
    import shutil
    import subprocess
    import tarfile

    repo = tmp_path / "repo"  # a copy: the sweep appends to benchmarks/results/scaling.csv
    shutil.copytree(repo_root / "benchmarks", repo / "benchmarks", ignore=shutil.ignore_patterns("results"))
    shutil.copytree(repo_root / "src", repo / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    (repo / "tests").mkdir()
    for name in ("test_gpu.py", "builders.py", "conftest.py"):
        shutil.copy(repo_root / "tests" / name, repo / "tests" / name)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (fake / "nvidia-smi").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "DEVICE": "cpu",
        "REAL_RUNS": "0",
        "DROP_STEP_FILES": "1",
        "RUN_ARGS": "--compression none --pretrain-epochs 2 --epochs 1 --n-top-genes 300",
    }
    out = tmp_path / "out"
    unused = tmp_path / "real.h5ad"  # the real dataset, not read with REAL_RUNS=0
    unused.touch()
    subprocess.Popen(
        [repo / "benchmarks" / "gpu_check.sh", out, unused, "700"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    dest = tmp_path / "dest"
    collected = subprocess.run(
        [repo / "benchmarks" / "gpu_collect.sh", out, "600", dest], capture_output=True, text=True, check=True
    )

    assert collected.stdout.strip().endswith(" done"), collected.stdout
    progress = (dest / "progress.log").read_text()
    assert "scaling sweep: exit 0" in progress and "CUDA tests: exit 0" in progress
    with tarfile.open(dest / "logs.tgz") as packed:
        names = packed.getnames()
    assert "./scaling/sim700.run.log" in names and "./gpu.csv" in names and "./disk.txt" in names
    assert not [name for name in names if name.endswith(".h5ad")]
    rows = read_table(out / "scaling.csv")
    assert rows[-1]["n_cells"] == "700" and rows[-1]["run_n_clusters_found"]
    left = sorted(path.relative_to(out / "scaling").as_posix() for path in (out / "scaling").rglob("*.h5ad"))
    assert left == ["sim700/export/sim700.h5ad", "sim700/train/sim700.trained.h5ad"]


def test_gpu_wheels_asks_for_the_pinned_versions(tmp_path, repo_root):
    """gpu_wheels.sh asks pip for every package a GPU machine lacks, at the constraints' version,
    as Python 3.12 wheels (a stand-in python3 records the request instead of downloading)."""
    import os
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n')
    (fake / "python3").chmod(0o755)
    (tmp_path / "wheels").mkdir()
    subprocess.run(
        [repo_root / "benchmarks" / "gpu_wheels.sh", tmp_path / "wheels"],
        check=True,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
        capture_output=True,
    )
    args = (fake / "args").read_text().split()
    assert args[:3] == ["-m", "pip", "download"] and "--no-deps" in args
    assert args[args.index("--python-version") + 1] == "3.12"
    pins = dict(
        line.strip().lower().split("==")
        for line in (repo_root / "requirements" / "constraints.txt").open()
        if "==" in line
    )
    requested = dict(arg.lower().split("==") for arg in args if "==" in arg)
    assert {"anndata", "scanpy", "pandas", "igraph", "leidenalg", "pynndescent", "umap-learn"} <= set(requested)
    assert all(pins[name] == version for name, version in requested.items())


def test_given_k_cost_times_the_count_and_finds_the_mixture_groups(benchmarks, tmp_path):
    importlib.import_module("given_k_cost").main(["--sizes", "1500", "--seeds", "0", "1", "--threads", "1"])
    rows = read_table(tmp_path / "given_k_cost.csv")
    assert [(row["n_cells"], row["seed"]) for row in rows] == [("1500", "0"), ("1500", "1")]
    assert all(row["communities_counted"] == "10" and float(row["seconds"]) > 0 for row in rows)

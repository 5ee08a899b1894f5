"""The export step: every file it writes, checked for content, plus the metrics and bad input."""

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.image import imread

from scdefr import metrics
from scdefr._files.h5ad import write_h5ad
from scdefr.errors import ScdefrError
from scdefr.export import UMAP_NEIGHBORS_KEY, add_umap, export, output_paths, place_among_neighbours
from scdefr.simulate import simulate_counts


def fake_trained(n_cells=240, n_clusters=4, seed=0) -> ad.AnnData:
    """A trained AnnData with the fields 'scdefr train' writes (architecture.md), made without training:
    the embedding is a PCA of log counts and Q a Student's t kernel to k-means centres."""
    import scanpy as sc
    from sklearn.cluster import KMeans

    adata = simulate_counts(n_cells=n_cells, n_genes=120, n_clusters=n_clusters, seed=seed, marker_log_fold_change=1.5)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=8, random_state=seed)
    z = adata.obsm["X_pca"].astype(np.float32)
    centres = KMeans(n_clusters, n_init=4, random_state=seed).fit(z).cluster_centers_
    q = 1.0 / (1.0 + ((z[:, None, :] - centres[None]) ** 2).sum(-1))
    q /= q.sum(axis=1, keepdims=True)
    adata.obsm["X_scdefr"] = z
    adata.obsm["scdefr_soft"] = q.astype(np.float32)
    adata.obs["scdefr_cluster"] = pd.Categorical(
        q.argmax(1).astype(str), categories=[str(k) for k in range(n_clusters)]
    )
    pre, joint = np.arange(1, 11), np.arange(1, 6)
    adata.uns["scdefr"] = {
        "n_clusters": n_clusters,
        "n_clusters_choice": {"method": "given"},
        "history": {
            "pretrain": {"loss": 2.0 / pre + 1, "zinb": 1.5 / pre + 0.8, "adjacency": 0.5 / pre + 0.2},
            "joint": {
                "loss": 1.3 - 0.01 * joint,
                "zinb": 0.9 - 0.01 * joint,
                "adjacency": 0.2 + 0 * joint,
                "kl": 0.1 / joint,
            },
        },
    }
    return adata


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("export")
    adata = fake_trained()
    original = adata.copy()
    paths = export(adata, outdir, "s1", label_key="cell_type", seed=0)
    return original, paths, outdir


def test_every_file_is_written(exported):
    _, paths, outdir = exported
    assert set(paths) == set(output_paths(outdir, "s1"))
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0, path
    assert not list(outdir.glob(".*.tmp")), "temporary files left behind"


def test_clusters_table_covers_every_cell_once(exported):
    original, paths, _ = exported
    table = pd.read_csv(paths["clusters"], dtype={"cluster": str})
    assert list(table.columns) == ["cell_id", "cluster", "probability"]
    assert table["cell_id"].is_unique and set(table["cell_id"]) == set(original.obs_names)
    table = table.set_index("cell_id").loc[original.obs_names]
    assert (table["cluster"].to_numpy() == original.obs["scdefr_cluster"].astype(str).to_numpy()).all()
    np.testing.assert_allclose(table["probability"], original.obsm["scdefr_soft"].max(axis=1), rtol=1e-5)
    assert table["probability"].between(1.0 / 4, 1.0).all()


def test_embedding_table(exported):
    original, paths, _ = exported
    table = pd.read_csv(paths["embedding"], index_col="cell_id")
    assert list(table.columns) == [f"scdefr_{i}" for i in range(1, 9)]
    np.testing.assert_allclose(
        table.loc[original.obs_names].to_numpy(), original.obsm["X_scdefr"], rtol=1e-4, atol=1e-5
    )


def test_metrics_match_a_recomputation_from_the_tables(exported):
    original, paths, _ = exported
    result = json.loads(paths["metrics"].read_text())
    table = pd.read_csv(paths["clusters"], dtype={"cluster": str}).set_index("cell_id")
    labels = original.obs.loc[table.index, "cell_type"].astype(str)
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    assert result["ari"] == pytest.approx(adjusted_rand_score(labels, table["cluster"]))
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(labels, table["cluster"]))
    assert 0.0 <= result["accuracy"] <= 1.0 and result["accuracy"] >= result["ari"] * 0.5
    assert result["sample"] == "s1" and result["n_cells"] == original.n_obs == result["n_labelled_cells"]
    assert result["n_clusters"] == table["cluster"].nunique()
    assert result["cluster_sizes"] == table["cluster"].value_counts().to_dict()
    assert -1.0 <= result["silhouette"] <= 1.0
    assert result["label_key"] == "cell_type" and result["n_labels"] == 4
    # the planted types are well separated in this fake embedding
    assert result["ari"] > 0.5


def test_final_h5ad_keeps_everything_and_adds_umap(exported):
    original, paths, _ = exported
    final = ad.read_h5ad(paths["h5ad"])
    assert final.obsm["X_umap"].shape == (original.n_obs, 2) and np.isfinite(final.obsm["X_umap"]).all()
    assert (final.layers["counts"] != original.layers["counts"]).nnz == 0
    for key in ("X_scdefr", "scdefr_soft", "X_pca"):
        np.testing.assert_array_equal(final.obsm[key], original.obsm[key])
    assert (final.obs["cell_type"] == original.obs["cell_type"]).all()
    assert final.uns["scdefr_export"]["ari"] == pytest.approx(json.loads(paths["metrics"].read_text())["ari"])
    assert "neighbors" not in final.uns  # the graph step's PCA neighbours are not overwritten


def _mqc_tsv(path):
    lines = path.read_text().splitlines()
    config = yaml.safe_load("\n".join(line[2:] for line in lines if line.startswith("# ")))
    table = pd.read_csv(path, sep="\t", comment="#", index_col=0)
    return config, table


def test_multiqc_files_parse(exported):
    _, paths, _ = exported
    result = json.loads(paths["metrics"].read_text())
    config, table = _mqc_tsv(paths["mqc_general_stats"])
    assert config["plot_type"] == "generalstats" and set(config["headers"]) == set(table.columns)
    assert list(table.index) == ["s1"]
    assert table.loc["s1", "cells"] == result["n_cells"] and table.loc["s1", "clusters"] == result["n_clusters"]
    assert table.loc["s1", "ari"] == pytest.approx(result["ari"], abs=1e-5)
    assert table.loc["s1", "silhouette"] == pytest.approx(result["silhouette"], abs=1e-5)

    config, table = _mqc_tsv(paths["mqc_cluster_sizes"])
    assert config["plot_type"] == "bargraph" and config["pconfig"]["id"]
    assert table.loc["s1"].to_dict() == {f"cluster {k}": v for k, v in result["cluster_sizes"].items()}
    for key in ("mqc_umap", "mqc_loss"):
        assert paths[key].name.endswith("_mqc.png")
        assert paths[key].read_bytes() == paths[key.replace("mqc_", "") + "_png"].read_bytes()


def test_pngs_are_real_images(exported):
    _, paths, _ = exported
    for key in ("umap_png", "loss_png", "sizes_png"):
        image = imread(paths[key])
        assert image.ndim == 3 and image.shape[0] >= 400 and image.shape[1] >= 600, key
        assert image[..., :3].std() > 0.05, f"{key} looks blank"
    # two side-by-side panels when a label column is given
    assert imread(paths["umap_png"]).shape[1] > 1.5 * imread(paths["umap_png"]).shape[0]


def test_without_labels_no_agreement_scores(tmp_path):
    adata = fake_trained(n_cells=150, n_clusters=3, seed=1)
    paths = export(adata, tmp_path, "nolabels")
    result = json.loads(paths["metrics"].read_text())
    assert "ari" not in result and "label_key" not in result
    _, table = _mqc_tsv(paths["mqc_general_stats"])
    assert list(table.columns) == ["cells", "clusters", "silhouette"]


def test_unlabelled_cells_are_left_out_of_the_scores(tmp_path):
    adata = fake_trained(n_cells=150, n_clusters=3, seed=2)
    labels = adata.obs["cell_type"].astype(object)
    labels.iloc[:50] = np.nan
    adata.obs["partial"] = labels
    result = json.loads(export(adata, tmp_path, "partial", label_key="partial")["metrics"].read_text())
    known = adata.obs["partial"].notna().to_numpy()
    assert result["n_labelled_cells"] == 100
    assert result["ari"] == pytest.approx(
        metrics.adjusted_rand_index(
            adata.obs["partial"][known].astype(str), adata.obs["scdefr_cluster"][known].astype(str)
        )
    )


def test_hungarian_accuracy():
    truth = np.array(["a", "a", "b", "b", "c", "c"])
    assert metrics.hungarian_accuracy(truth, [2, 2, 0, 0, 1, 1]) == 1.0  # any renaming is a perfect match
    assert metrics.hungarian_accuracy(truth, [0, 0, 0, 0, 1, 1]) == pytest.approx(4 / 6)  # one label unmatched
    assert metrics.hungarian_accuracy(truth, [0, 1, 2, 3, 4, 5]) == pytest.approx(3 / 6)  # more clusters than labels


def test_silhouette_undefined_for_one_cluster():
    z = np.random.default_rng(0).normal(size=(20, 3))
    assert metrics.silhouette(z, np.zeros(20)) is None
    assert -1 <= metrics.silhouette(z, np.arange(20) % 2) <= 1


def test_missing_fields_and_labels_are_user_errors(tmp_path):
    adata = fake_trained(n_cells=100, n_clusters=2)
    with pytest.raises(ScdefrError, match="label column 'nope'"):
        export(adata, tmp_path / "a", "x", label_key="nope")
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())
    del adata.obsm["X_scdefr"]
    with pytest.raises(ScdefrError, match="X_scdefr"):
        export(adata, tmp_path / "b", "x")


@pytest.fixture()
def trained_file(tmp_path):
    path = tmp_path / "s2.trained.h5ad"
    write_h5ad(fake_trained(n_cells=120, n_clusters=3, seed=3), path)
    return path


def test_cli_export_default_prefix(trained_file, tmp_path):
    from scdefr.cli import main

    outdir = tmp_path / "out"
    assert (
        main(["export", "--input", str(trained_file), "--outdir", str(outdir), "--label-key", "cell_type", "--quiet"])
        == 0
    )
    assert (outdir / "s2.clusters.csv").is_file() and (outdir / "s2_mqc.tsv").is_file()


@pytest.mark.parametrize(
    "case",
    ["missing_input", "not_trained", "label_key_absent", "unwritable_outdir", "umap_limit_one", "umap_limit_negative"],
)
def test_cli_export_errors_exit_2_in_one_line(case, trained_file, tmp_path, capsys):
    from scdefr.cli import main

    outdir = tmp_path / "out"
    argv = ["export", "--input", str(trained_file), "--outdir", str(outdir)]
    if case == "missing_input":
        argv[2] = str(tmp_path / "absent.h5ad")
    elif case == "not_trained":
        counts = tmp_path / "counts.h5ad"
        write_h5ad(simulate_counts(50, 30, 2), counts)
        argv[2] = str(counts)
    elif case == "label_key_absent":
        argv += ["--label-key", "no_such_column"]
    elif case.startswith("umap_limit"):
        argv += ["--umap-max-cells", "1" if case.endswith("one") else "-5"]
    else:
        outdir = tmp_path / "a_file"
        outdir.write_text("not a folder")
        argv[4] = str(outdir / "sub")
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses an impossible option value before anything runs
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scdefr export: error:") and "\n" not in err, err
    if case != "unwritable_outdir":
        assert not outdir.exists() or not any(outdir.iterdir())


def test_umap_neighbours_are_exact_above_scanpys_approximate_threshold(monkeypatch):
    """scanpy searches with pynndescent from 8,192 cells (and compiles it again in every process,
    about 45 s on 2 cores); the export searches exactly up to the graph step's limit."""
    import scanpy as sc
    from sklearn.neighbors import NearestNeighbors

    n_cells = 9000
    embedding = np.random.default_rng(0).normal(size=(n_cells, 16)).astype(np.float32)
    adata = ad.AnnData(np.zeros((n_cells, 1), dtype=np.float32), obsm={"X_scdefr": embedding})
    monkeypatch.setattr(sc.tl, "umap", lambda *args, **kwargs: None)  # only the neighbours are checked here
    add_umap(adata)

    distances = adata.obsp[f"{UMAP_NEIGHBORS_KEY}_distances"].tocsr()
    _, nearest = NearestNeighbors(n_neighbors=15).fit(embedding).kneighbors(embedding)
    for cell in range(0, n_cells, 50):
        assert set(distances[cell].indices) == set(nearest[cell]) - {cell}


def planted_blobs(n_cells=3000, n_blobs=6, seed=0):
    """Well separated 16-d blobs: a layout that keeps them apart shows where each cell belongs."""
    rng = np.random.default_rng(seed)
    blob = rng.integers(n_blobs, size=n_cells)
    centres = rng.normal(scale=6.0, size=(n_blobs, 16))
    embedding = (centres[blob] + rng.normal(size=(n_cells, 16))).astype(np.float32)
    return ad.AnnData(np.zeros((n_cells, 1), dtype=np.float32), obsm={"X_scdefr": embedding}), blob


def test_umap_above_the_limit_fits_a_subsample_and_places_the_rest_with_their_kind():
    from sklearn.neighbors import NearestNeighbors

    adata, blob = planted_blobs()
    add_umap(adata, seed=0, max_cells=1000)
    layout = adata.obsm["X_umap"]
    assert layout.shape == (3000, 2) and np.isfinite(layout).all()
    assert dict(adata.uns["scdefr_umap"]) == {"n_fitted": 1000, "n_placed": 2000}
    assert UMAP_NEIGHBORS_KEY not in adata.uns  # no kNN graph of every cell was built

    fitted = np.sort(np.random.default_rng(0).choice(3000, size=1000, replace=False))
    placed = np.setdiff1d(np.arange(3000), fitted)
    _, nearest = NearestNeighbors(n_neighbors=1).fit(layout[fitted]).kneighbors(layout[placed])
    assert (blob[fitted][nearest[:, 0]] == blob[placed]).mean() > 0.98

    again, _ = planted_blobs()
    add_umap(again, seed=0, max_cells=1000)
    np.testing.assert_array_equal(again.obsm["X_umap"], layout)


def test_umap_up_to_the_limit_fits_every_cell():
    adata, _ = planted_blobs(n_cells=400)
    add_umap(adata, seed=0, max_cells=400)
    assert dict(adata.uns["scdefr_umap"]) == {"n_fitted": 400, "n_placed": 0}
    assert adata.obsp[f"{UMAP_NEIGHBORS_KEY}_distances"].shape == (400, 400)


def test_placement_weights_the_nearest_fitted_cells_by_inverse_distance():
    reference = np.array([[0.0], [1.0], [10.0]], dtype=np.float32)
    layout = np.array([[0.0, 0.0], [3.0, 3.0], [100.0, 100.0]], dtype=np.float32)
    query = np.array([[0.0], [0.5], [0.25]], dtype=np.float32)
    placed = place_among_neighbours(reference, layout, query, n_neighbors=2)
    np.testing.assert_allclose(placed[0], [0.0, 0.0], atol=1e-6)  # on a fitted cell: its position
    np.testing.assert_allclose(placed[1], [1.5, 1.5], rtol=1e-6)  # midway: the mean
    np.testing.assert_allclose(placed[2], [0.75, 0.75], rtol=1e-6)  # weights 1/0.25 and 1/0.75


def test_an_unknown_compression_is_refused_before_any_file_is_written(tmp_path):
    with pytest.raises(ScdefrError, match="compression must be one of"):
        export(fake_trained(n_cells=60, n_clusters=3), tmp_path / "out", "s", compression="zstd")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_default_umap_subsample_is_searched_exactly():
    """Fitting more cells than the exact search's limit would pay pynndescent's numba compilation
    (about 45 s) in the export of every large input."""
    from scdefr import pp
    from scdefr.options import ExportOptions

    assert pp.auto_knn_method(ExportOptions.umap_max_cells) == "exact"


def test_cli_export_carries_x_and_the_counts_from_file_to_file(trained_file, tmp_path):
    """The export reads the trained file without X and the counts (it uses neither) and copies
    both into the h5ad it writes."""
    from scdefr.cli import main

    outdir = tmp_path / "out"
    assert main(["export", "--input", str(trained_file), "--outdir", str(outdir), "--quiet"]) == 0
    trained, written = ad.read_h5ad(trained_file), ad.read_h5ad(outdir / "s2.h5ad")
    np.testing.assert_array_equal(np.asarray(written.X.todense()), np.asarray(trained.X.todense()))
    assert (written.layers["counts"] != trained.layers["counts"]).nnz == 0
    assert "X_umap" in written.obsm and "scdefr_export" in written.uns

"""The simulator: shapes, integer counts, planted labels, reproducibility, bounded memory."""

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from scdefr.errors import ScdefrError
from scdefr.simulate import simulate_counts


@pytest.fixture(scope="module")
def small():
    return simulate_counts(n_cells=300, n_genes=150, n_clusters=4, seed=3)


def test_shapes_names_and_labels(small):
    assert small.shape == (300, 150)
    assert small.obs_names.is_unique and small.var_names.is_unique
    assert small.var_names[0].startswith("MT-") and sum(name.startswith("MT-") for name in small.var_names) == 13
    assert small.var_names[13] == "gene_00001"
    labels = small.obs["cell_type"]
    assert labels.dtype == "category"
    assert sorted(labels.cat.categories) == ["type_1", "type_2", "type_3", "type_4"]
    assert labels.value_counts().min() > 0
    # every type has its own markers
    assert set(small.var["marker_of"]) - {""} == set(labels.cat.categories)


def test_counts_are_sparse_nonnegative_integers(small):
    X = small.X
    assert sp.issparse(X) and X.format == "csr" and X.dtype == np.float32
    assert (X.data > 0).all() and np.array_equal(X.data, np.round(X.data))
    assert 0.05 < X.nnz / np.prod(X.shape) < 0.95
    totals = np.asarray(X.sum(axis=1)).ravel()
    assert totals.min() > 0
    mito_share = np.asarray(X[:, :13].sum(axis=1)).ravel() / totals
    assert 0.01 < np.median(mito_share) < 0.1
    # damaged cells carry a higher mitochondrial share than healthy ones
    damaged = small.obs["damaged"].to_numpy()
    if damaged.any():
        assert mito_share[damaged].mean() > 2 * mito_share[~damaged].mean()


def test_library_sizes_vary_lognormally(small):
    totals = np.asarray(small.X.sum(axis=1)).ravel()
    sd_log = np.log(totals[~small.obs["damaged"].to_numpy()]).std()
    assert 0.2 < sd_log < 0.8


def test_markers_differ_between_types(small):
    """A type's marker genes change more between it and the other cells than the other genes do."""
    X = small.X.toarray()
    labels = small.obs["cell_type"].to_numpy()
    marker_of = small.var["marker_of"].to_numpy()
    for name in small.obs["cell_type"].cat.categories:
        change = np.abs(np.log((X[labels == name].mean(0) + 0.1) / (X[labels != name].mean(0) + 0.1)))
        assert np.median(change[marker_of == name]) > 2 * np.median(change[marker_of == ""]), name


def test_reproducible_by_seed(small):
    again = simulate_counts(n_cells=300, n_genes=150, n_clusters=4, seed=3)
    other = simulate_counts(n_cells=300, n_genes=150, n_clusters=4, seed=4)
    assert (small.X != again.X).nnz == 0
    assert (small.obs["cell_type"] == again.obs["cell_type"]).all()
    assert (small.X != other.X).nnz > 0


def test_spans_several_chunks():
    """More cells than one chunk: rows stay in order and every row is filled."""
    adata = simulate_counts(n_cells=12_000, n_genes=200, n_clusters=3, seed=0)
    assert adata.shape == (12_000, 200)
    assert np.diff(adata.X.indptr).min() > 0
    assert adata.X.has_sorted_indices or adata.X.sorted_indices().nnz == adata.X.nnz


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_cells=0),
        dict(n_genes=0),
        dict(n_clusters=0),
        dict(n_clusters=11, n_cells=10),
        dict(library_size=0),
        dict(damaged_fraction=1.5),
        dict(n_genes=13),
    ],
)
def test_impossible_parameters(kwargs):
    params = dict(n_cells=10, n_genes=50, n_clusters=2) | kwargs
    with pytest.raises(ScdefrError):
        simulate_counts(**params)


MEMORY_PROBE = """
import json, resource
from scdefr.simulate import simulate_counts
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
X = simulate_counts(n_cells=200_000, n_genes=200, n_clusters=6, seed=1).X
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth": (after - before) * 1024, "sparse": X.data.nbytes + X.indices.nbytes + X.indptr.nbytes}))
"""


@pytest.mark.slow
def test_memory_stays_near_the_sparse_result():
    """200k cells x 200 genes: peak memory grows by the CSR result plus one bounded chunk of work arrays.

    Generating all cells at once would hold several dense 200k x 200 float64/int64 arrays (320 MB each).
    """
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, check=True)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    assert measured["growth"] < measured["sparse"] + 150 * 2**20, measured


def test_cli_writes_h5ad(tmp_path):
    import anndata as ad

    from scdefr.cli import main

    out = tmp_path / "sim.h5ad"
    assert (
        main(
            [
                "simulate",
                "--n-cells",
                "120",
                "--n-genes",
                "60",
                "--n-clusters",
                "3",
                "--seed",
                "2",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    adata = ad.read_h5ad(out)
    assert adata.shape == (120, 60) and adata.obs["cell_type"].nunique() == 3
    assert (adata.X != simulate_counts(120, 60, 3, seed=2).X).nnz == 0
    assert not list(tmp_path.glob(".*.tmp"))


def test_cli_bad_parameters_exit_2(tmp_path, capsys):
    from scdefr.cli import main

    out = tmp_path / "sim.h5ad"
    assert main(["simulate", "--n-cells", "0", "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scdefr simulate: error:") and "\n" not in err
    assert not out.exists()


def test_parts_share_the_programme_and_cells_but_draw_their_own_counts():
    """Slices of one simulation: types, names and genes as without parts; counts from each slice's
    own stream, reproducible, and with the same expression per type."""
    whole = simulate_counts(n_cells=900, n_genes=120, n_clusters=3, seed=5)
    parts = [simulate_counts(n_cells=900, n_genes=120, n_clusters=3, seed=5, part=(i, 3)) for i in range(3)]
    assert [part.n_obs for part in parts] == [300, 300, 300]
    assert list(np.concatenate([part.obs_names for part in parts])) == list(whole.obs_names)
    for column in ("cell_type", "damaged"):
        assert list(np.concatenate([part.obs[column] for part in parts])) == list(whole.obs[column])
    assert all(part.var.equals(whole.var) for part in parts)
    stacked = sp.vstack([part.X for part in parts]).tocsr()
    assert (stacked != whole.X).nnz > 0
    again = simulate_counts(n_cells=900, n_genes=120, n_clusters=3, seed=5, part=(1, 3))
    assert (again.X != parts[1].X).nnz == 0
    ratio = (stacked.sum() + 1) / (whole.X.sum() + 1)
    assert 0.95 < ratio < 1.05


@pytest.mark.parametrize("part", [(3, 3), (-1, 2), (0, 0), (0, 901)])
def test_impossible_parts(part):
    with pytest.raises(ScdefrError, match="part must be"):
        simulate_counts(n_cells=900, n_genes=120, n_clusters=3, part=part)


def test_cli_parts_concatenate_the_slices(tmp_path):
    import anndata as ad

    from scdefr.cli import main

    out = tmp_path / "sim.h5ad"
    assert (
        main(
            [
                "simulate",
                "--n-cells",
                "150",
                "--n-genes",
                "60",
                "--n-clusters",
                "3",
                "--seed",
                "2",
                "--parts",
                "3",
                "--threads",
                "2",
                "--output",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    adata = ad.read_h5ad(out)
    expected = sp.vstack([simulate_counts(150, 60, 3, seed=2, part=(i, 3)).X for i in range(3)])
    assert (adata.X != expected).nnz == 0
    assert adata.obs.equals(simulate_counts(150, 60, 3, seed=2).obs)
    assert adata.var["marker_of"].tolist() == simulate_counts(150, 60, 3, seed=2).var["marker_of"].tolist()
    assert adata.uns["simulation"]["parts"] == 3 and "part" not in adata.uns["simulation"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["sim.h5ad"]
    assert main(["simulate", "--n-cells", "5", "--parts", "6", "--output", str(out)]) == 2


@pytest.mark.parametrize("parts", ["1", "2"])
def test_cli_unwritable_output_folder_is_one_line(parts, capsys):
    """A folder the process cannot create files in (/proc: os.access says yes to root) ends in one
    line and exit 4 (the system refused the write), for the single write and the parts' scratch folder."""
    from scdefr.cli import main

    assert (
        main(
            ["simulate", "--n-cells", "50", "--parts", parts, "--threads", "2", "--output", "/proc/sim.h5ad", "--quiet"]
        )
        == 4
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("scdefr simulate: error:") and "/proc" in err and "\n" not in err


def test_type_proportions_set_the_type_sizes():
    """Given shares replace the random spread: one dominant type, small ones still present, and the
    gene programme drawn from the same stream as without them."""
    shares = [0.6, 0.2, 0.1, 0.05, 0.03, 0.02]
    adata = simulate_counts(n_cells=5000, n_genes=100, n_clusters=6, seed=1, type_proportions=shares)
    observed = adata.obs["cell_type"].value_counts(normalize=True)
    for k, share in enumerate(shares):
        assert abs(observed[f"type_{k + 1}"] - share) < 0.02, (k, observed[f"type_{k + 1}"])
    assert adata.uns["simulation"]["type_proportions"] == pytest.approx(shares)
    tripled = [share * 3 for share in shares]
    rescaled = simulate_counts(n_cells=5000, n_genes=100, n_clusters=6, seed=1, type_proportions=tripled)
    assert (rescaled.obs["cell_type"] == adata.obs["cell_type"]).all()
    default = simulate_counts(n_cells=5000, n_genes=100, n_clusters=6, seed=1)
    assert default.var.equals(adata.var)
    assert "type_proportions" not in default.uns["simulation"]


@pytest.mark.parametrize("shares", [[0.5, 0.5], [0.5, 0.5, 0.0], [1.0, -1.0, 1.0], [1.0, float("nan"), 1.0]])
def test_impossible_type_proportions(shares):
    with pytest.raises(ScdefrError, match="type proportions"):
        simulate_counts(n_cells=50, n_genes=50, n_clusters=3, type_proportions=shares)


def test_cli_type_proportions(tmp_path, capsys):
    import anndata as ad

    from scdefr.cli import main

    out = tmp_path / "sim.h5ad"
    common = ["simulate", "--n-cells", "400", "--n-genes", "60", "--n-clusters", "3", "--seed", "2", "--quiet"]
    assert main([*common, "--type-proportions", "0.7,0.25,0.05", "--output", str(out)]) == 0
    expected = simulate_counts(400, 60, 3, seed=2, type_proportions=[0.7, 0.25, 0.05])
    assert (ad.read_h5ad(out).obs["cell_type"] == expected.obs["cell_type"]).all()
    out.unlink()
    for shares in ("0.7,0.3", "0.7,0,0.3"):  # one share short; a share of zero
        assert main([*common, "--parts", "2", "--type-proportions", shares, "--output", str(out)]) == 2
    with pytest.raises(SystemExit) as parse_error:
        main([*common, "--type-proportions", "0.7,x,0.1", "--output", str(out)])
    assert parse_error.value.code == 2
    for err in capsys.readouterr().err.strip().splitlines():
        assert "proportions" in err, err
    assert not out.exists()

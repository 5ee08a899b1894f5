"""``scdefr train`` on the command line: help, a full run with its files, one-line errors."""

import re

import anndata as ad
import pytest
import torch
from builders import make_graph_adata

from scdefr.cli import main
from scdefr.cli.train import default_model_path

OPTIONS = (
    "--input",
    "--output",
    "--n-clusters",
    "--n-clusters-method",
    "--leiden-resolution",
    "--max-clusters",
    "--smoothing-steps",
    "--kmeans-n-init",
    "--hidden-dims",
    "--sigma",
    "--dropout",
    "--tag-hops",
    "--zinb-form",
    "--input-scaling",
    "--pretrain-epochs",
    "--epochs",
    "--lr-pretrain",
    "--lr",
    "--batch-size",
    "--device",
    "--amp",
    "--log-every",
    "--graph-loss",
    "--weight-rec-pretrain",
    "--weight-zinb-pretrain",
    "--weight-rec",
    "--weight-zinb",
    "--weight-kl",
    "--weight-bce-graph",
    "--weight-bce-ae",
    "--cluster-balance",
    "--model-out",
    "--checkpoint-every",
    "--resume",
    "--seed",
    "--threads",
    "--quiet",
)
QUICK_ARGS = [
    "--hidden-dims",
    "16,8,4",
    "--pretrain-epochs",
    "3",
    "--epochs",
    "2",
    "--kmeans-n-init",
    "2",
    "--threads",
    "1",
]


def run_cli(argv):
    """Exit status of ``scdefr ARGV``, whether argparse (SystemExit) or the step reports the error."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.fixture
def graph_file(tmp_path):
    path = tmp_path / "S.graph.h5ad"
    make_graph_adata(n_cells=60, n_genes=20, n_types=3).write_h5ad(path)
    return path


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in OPTIONS:
        assert re.search(rf"{re.escape(option)}\b", text), option


def test_train_writes_outputs_and_model(graph_file, tmp_path):
    output = tmp_path / "S.trained.h5ad"
    code = main(["train", "--input", str(graph_file), "--output", str(output), "--n-clusters", "3", *QUICK_ARGS])
    assert code == 0
    trained = ad.read_h5ad(output)
    assert trained.obsm["X_scdefr"].shape == (60, 4) and trained.obsm["scdefr_soft"].shape == (60, 3)
    assert set(trained.obs["scdefr_cluster"].cat.categories) == {"0", "1", "2"}
    assert trained.uns["scdefr"]["seed"] == 0 and trained.uns["scdefr"]["device"] == "cpu"
    model_path = tmp_path / "S.model.pt"
    assert str(model_path) == default_model_path(str(output))
    checkpoint = torch.load(model_path, weights_only=True)
    assert checkpoint["phase"] == "done" and checkpoint["module"]["n_clusters"] == 3

    # resuming a finished run only predicts again: same clusters
    again = tmp_path / "again.h5ad"
    code = main(
        [
            "train",
            "--input",
            str(graph_file),
            "--output",
            str(again),
            "--resume",
            str(model_path),
            "--model-out",
            str(tmp_path / "again.pt"),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    assert (ad.read_h5ad(again).obs["scdefr_cluster"] == trained.obs["scdefr_cluster"]).all()
    assert torch.load(tmp_path / "again.pt", weights_only=True)["phase"] == "done"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sigma", "1.5"], "sigma"),
        (["--n-clusters", "61"], "exceeds the number of cells"),
        (["--n-clusters", "many"], "--n-clusters"),
        (["--pretrain-epochs", "-2"], "--pretrain-epochs"),
        (["--epochs", "many"], "--epochs"),
        (["--hidden-dims", "64"], "--hidden-dims"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--device", "tpu"], "device"),
        (["--resume", "missing.pt"], "does not exist"),
    ],
)
def test_bad_options_are_one_line_errors(graph_file, tmp_path, capsys, args, message):
    output = tmp_path / "S.trained.h5ad"
    assert run_cli(["train", "--input", str(graph_file), "--output", str(output), *QUICK_ARGS, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("scdefr train: error:") and "\n" not in err and message in err
    assert not output.exists() and not (tmp_path / "S.model.pt").exists()


def test_input_without_graph_is_refused(tmp_path, capsys):
    adata = make_graph_adata(n_cells=30, n_genes=10)
    del adata.obsp["scdefr_adjacency"]
    path = tmp_path / "S.qc.h5ad"
    adata.write_h5ad(path)
    assert run_cli(["train", "--input", str(path), "--output", str(tmp_path / "out.h5ad")]) == 2
    assert "scdefr graph" in capsys.readouterr().err
    assert not (tmp_path / "out.h5ad").exists()

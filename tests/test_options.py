"""One declaration of every option: the command line and the Python API follow scdefr.options."""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from scdefr import pp, tl
from scdefr.cli import build_parser, parse_args
from scdefr.cli._options import flag
from scdefr.errors import ScdefrError
from scdefr.export import export
from scdefr.model import SCDEFR
from scdefr.options import (
    COMMAND_OPTIONS,
    PRESETS,
    CommonOptions,
    ExportOptions,
    GraphOptions,
    QCOptions,
)


def subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def actions(name: str) -> dict[str, argparse.Action]:
    return {action.dest: action for action in subcommand(name)._actions}


@pytest.mark.parametrize("command", list(COMMAND_OPTIONS))
def test_every_option_is_on_the_command_line_with_its_declared_default(command):
    found = actions(command)
    for group in (*COMMAND_OPTIONS[command], CommonOptions):
        for item in dataclasses.fields(group):
            action = found[item.name]
            assert action.option_strings == [flag(item.name)]
            assert action.default == item.default, item.name
            assert action.help.count("(default:") <= 1, item.name  # said once, not by argparse again


def test_run_takes_every_step_option_once():
    """Names are unique across steps: scdefr run puts them in one parser (argparse refuses duplicates)."""
    names = [name for group in COMMAND_OPTIONS["run"] for name in group.names()]
    assert len(names) == len(set(names))
    assert set(names) <= set(actions("run"))


def test_python_defaults_are_the_declared_ones():
    """pp.qc, pp.build_graph and export take the options by the same names, with the same defaults."""
    for function, group, skipped in (
        (pp.qc, QCOptions, {"transpose"}),
        (pp.build_graph, GraphOptions, set()),
        (export, ExportOptions, set()),
    ):
        parameters = inspect.signature(function).parameters
        for name in set(group.names()) - skipped:
            assert parameters[name].default == getattr(group, name), (function.__name__, name)
    assert inspect.signature(SCDEFR).parameters["n_clusters"].default == "auto"
    assert inspect.signature(tl.scdefr).parameters["seed"].default == CommonOptions.seed


def test_help_of_the_knn_method_states_the_exact_search_limit():
    assert f"{pp.EXACT_KNN_MAX_CELLS:,}" in actions("graph")["knn_method"].help


@pytest.mark.parametrize(
    "group, values, message",
    [
        (QCOptions, {"min_genes": -1}, r"min_genes \(--min-genes\) must be >= 0, got -1"),
        (QCOptions, {"max_counts": 5, "min_counts": 10}, r"max_counts \(--max-counts\) \(5\) is below min_counts"),
        (QCOptions, {"max_pct_mito": 101.0}, r"max_pct_mito \(--max-pct-mito\) must be <= 100"),
        (QCOptions, {"n_top_genes": True}, "must be an integer"),
        (GraphOptions, {"knn_method": "fast"}, "must be one of auto, exact, approx"),
        (ExportOptions, {"umap_max_cells": 1}, "0 .every cell. or at least 2"),
        (CommonOptions, {"compression": "lzf"}, "must be one of gzip, none"),
        (CommonOptions, {"seed": -1}, "must be >= 0"),
        (ExportOptions, {"label_key": "cell\ttype"}, "without tabs, newlines or other control characters"),
    ],
)
def test_bad_values_are_refused_in_one_line_naming_the_option(group, values, message):
    with pytest.raises(ScdefrError, match=message):
        group(**values)


def test_keywords_parse_to_their_python_values():
    parsed = subcommand("run").parse_args(
        [
            "--input",
            "x",
            "--outdir",
            "o",
            "--n-clusters",
            "auto",
            "--epochs",
            "7",
            "--max-counts",
            "none",
            "--hidden-dims",
            "8,4",
            "--batch-size",
            "0",
        ]
    )
    assert (parsed.n_clusters, parsed.epochs, parsed.max_counts, parsed.hidden_dims, parsed.batch_size) == (
        "auto",
        7,
        None,
        (8, 4),
        0,
    )


def test_paper_preset_holds_the_values_of_the_papers_code():
    """As DARKpmm/scDEFR sets them: parameter_setting (lr 5e-5, lr1 1e-8, 250 epochs, widths 24/128/1024,
    sigma 0.1, 2,000 genes), get_adj (10-NN with the cell, 50 PCs), DCRN(dropout=0.01), the loss weights
    of pre_train and alt_train, KMeans(n_init=20); every value valid for its option."""
    paper = PRESETS["paper"]
    assert (paper["lr_pretrain"], paper["lr"], paper["pretrain_epochs"], paper["epochs"]) == (5e-5, 1e-8, 250, 250)
    assert (paper["hidden_dims"], paper["sigma"], paper["dropout"], paper["n_top_genes"]) == (
        (1024, 128, 24),
        0.1,
        0.01,
        2000,
    )
    assert (paper["n_neighbors"], paper["n_pcs"], paper["kmeans_n_init"], paper["batch_size"]) == (10, 50, 20, 0)
    weights = [
        paper[f"weight_{name}"]
        for name in ("rec_pretrain", "zinb_pretrain", "rec", "zinb", "kl", "bce_graph", "bce_ae")
    ]
    assert weights == [1.0, 0.5, 0.3, 0.1, 0.5, 0.1, 0.1]
    groups = COMMAND_OPTIONS["run"]
    assert set(paper) <= {name for group in groups for name in group.names()}
    for group in groups:
        group.pick(paper)  # validates


def test_preset_sets_the_defaults_of_the_options_it_names_and_given_options_win():
    run = ["run", "--input", "x", "--outdir", "o"]
    args = parse_args([*run, "--preset", "paper", "--epochs", "10"])
    for name, value in PRESETS["paper"].items():
        assert getattr(args, name) == (10 if name == "epochs" else value), name
    graph = parse_args(["graph", "--input", "x", "--output", "y", "--preset", "paper"])
    assert (graph.graph_normalization, graph.knn_method) == ("directed", "exact") and not hasattr(graph, "epochs")
    plain = parse_args(run)
    for group in COMMAND_OPTIONS["run"]:
        for item in dataclasses.fields(group):
            assert getattr(plain, item.name) == item.default, item.name

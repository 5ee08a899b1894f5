"""What every failure does (issue 30): no input overwritten, no results mixed from two runs, one line
and a status below 128 for every fault, damaged checkpoints refused, sample names checked whole, and
nothing done to the data without a word.

Each test states the exact outcome: the exit status, the one line on stderr, and the files before and
after, byte for byte. Faults are injected where the system would raise them (a write, an allocation);
one test fills a real file size limit in a separate process.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import json
import logging
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from builders import QUICK, make_counts, make_graph_adata
from scipy import sparse

from scdefr import checkpoint, runner
from scdefr._files.atomic import owner_tag, remove_stale_temporaries, scratch_dir, write_text
from scdefr._files.h5ad import write_h5ad
from scdefr._files.paths import check_name, same_file
from scdefr.cli import main
from scdefr.errors import ScdefrError

QC_ARGS = ["--n-top-genes", "50", "--quiet"]
TRAIN_ARGS = [
    "--hidden-dims",
    "16,8,4",
    "--pretrain-epochs",
    "3",
    "--epochs",
    "2",
    "--kmeans-n-init",
    "2",
    "--batch-size",
    "0",
    "--quiet",
]


# --- helpers ----------------------------------------------------------------------------------------
def run_cli(*argv) -> int:
    """Exit status of ``scdefr ARGV`` (argparse's own refusals included)."""
    try:
        return main([str(arg) for arg in argv])
    except SystemExit as exc:
        return exc.code


def error_line(capsys, command: str) -> str:
    """The one line the command printed on stderr (asserting it is one line, of the right form)."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"scdefr {command}: error: "), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) by relative path, with its bytes; folders too."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): (path.read_bytes() if path.is_file() else b"<dir>")
        for path in sorted(folder.rglob("*"))
    }


def disk_full(*args, **kwargs):
    """A write the system refuses as it does on a full disk (no file named: the caller must name it)."""
    raise OSError(errno.ENOSPC, "No space left on device")


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def counts_file(tmp_path) -> Path:
    path = tmp_path / "in" / "counts.h5ad"
    path.parent.mkdir()
    make_counts().write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def qc_outputs(tmp_path_factory) -> Path:
    """The outputs of ``scdefr qc`` on :func:`make_counts`, made once."""
    folder = tmp_path_factory.mktemp("qc")
    make_counts().write_h5ad(folder / "counts.h5ad")
    assert run_cli("qc", "--input", folder / "counts.h5ad", "--output", folder / "out" / "S.qc.h5ad", *QC_ARGS) == 0
    return folder / "out"


@pytest.fixture
def qc_done(qc_outputs, counts_file, tmp_path) -> Path:
    """A finished ``scdefr qc`` of counts_file in out/: the previous results a failing rerun must leave alone."""
    return Path(shutil.copytree(qc_outputs, tmp_path / "out"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A graph input, its trained output and model (a finished checkpoint), and a checkpoint of the
    same run in the joint phase, with its optimiser state."""
    folder = tmp_path_factory.mktemp("trained")
    graph = folder / "S.graph.h5ad"
    make_graph_adata(n_cells=60, n_genes=20, n_types=3).write_h5ad(graph)
    saved = []
    real_save = checkpoint.save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            checkpoint, "save", lambda path, state: (saved.append(copy.deepcopy(state)), real_save(path, state))
        )
        assert (
            run_cli("train", "--input", graph, "--output", folder / "S.trained.h5ad", "--n-clusters", "3", *TRAIN_ARGS)
            == 0
        )
    joint = [state for state in saved if state["phase"] == "joint" and state["optimizer"].get("state")][-1]
    return SimpleNamespace(
        graph=graph, output=folder / "S.trained.h5ad", model=folder / "S.model.pt", joint=joint, folder=folder
    )


# === 1. No command overwrites its input ================================================================
def _qc_collision(case: str, tmp_path: Path, counts: Path) -> list:
    """The qc arguments of one collision case (run from tmp_path)."""
    if case == "output is input":
        return ["--output", counts]
    if case == "output is input, relative spelling":
        return ["--output", os.path.relpath(counts, tmp_path)]
    if case == "output is input, dot-dot spelling":
        return ["--output", counts.parent / ".." / counts.parent.name / counts.name]
    if case == "output is a symbolic link to input":
        (tmp_path / "link.h5ad").symlink_to(counts)
        return ["--output", tmp_path / "link.h5ad"]
    if case == "output is a hard link of input":
        os.link(counts, tmp_path / "hard.h5ad")
        return ["--output", tmp_path / "hard.h5ad"]
    if case == "output through a linked folder":
        (tmp_path / "dirlink").symlink_to(counts.parent, target_is_directory=True)
        return ["--output", tmp_path / "dirlink" / counts.name]
    if case == "summary is input":
        return ["--output", tmp_path / "o" / "S.qc.h5ad", "--summary", counts]
    if case == "plot is input":
        return ["--output", tmp_path / "o" / "S.qc.h5ad", "--plot", counts]
    if case == "summary is output":
        return ["--output", tmp_path / "o" / "S.qc.h5ad", "--summary", tmp_path / "o" / "S.qc.h5ad"]
    if case == "plot is summary":
        return ["--output", tmp_path / "o" / "x.h5ad", "--summary", tmp_path / "p", "--plot", tmp_path / "p"]
    raise ValueError(case)


QC_COLLISIONS = {
    "output is input": "--output .* is the input \\(--input\\)",
    "output is input, relative spelling": "--output .* is the input \\(--input\\)",
    "output is input, dot-dot spelling": "--output .* is the input \\(--input\\)",
    "output is a symbolic link to input": "--output .* is the input \\(--input\\)",
    "output is a hard link of input": "--output .* is the input \\(--input\\)",
    "output through a linked folder": "--output .* is the input \\(--input\\)",
    "summary is input": "--summary .* is the input \\(--input\\)",
    "plot is input": "--plot .* is the input \\(--input\\)",
    "summary is output": "--output and --summary are the same file",
    "plot is summary": "--summary and --plot are the same file",
}


@pytest.mark.parametrize("case", list(QC_COLLISIONS))
def test_qc_refuses_every_path_collision_before_any_work(case, counts_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    read = []
    monkeypatch.setattr("scdefr.io.read_counts", lambda *a, **k: read.append(a))
    assert run_cli("qc", "--input", counts_file, *_qc_collision(case, tmp_path, counts_file), *QC_ARGS) == 2
    line = error_line(capsys, "qc")
    assert re.search(QC_COLLISIONS[case], line), line
    assert line.endswith("write to another path") or "give them different paths" in line
    assert read == []  # refused before the input was even read
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # the input, byte for byte
    assert not (tmp_path / "o").exists() and not (tmp_path / "p").exists()


def test_qc_refuses_an_output_over_a_file_of_an_input_matrix_folder(tmp_path, capsys):
    from scipy.io import mmwrite

    folder = tmp_path / "mtx"
    folder.mkdir()
    counts = make_counts(40, 30)
    mmwrite(folder / "matrix.mtx", sparse.csr_matrix(counts.X.T))
    (folder / "barcodes.tsv").write_text("\n".join(counts.obs_names) + "\n")
    (folder / "genes.tsv").write_text("\n".join(f"{g}\t{g}" for g in counts.var_names) + "\n")
    before = snapshot(folder)
    assert run_cli("qc", "--input", folder, "--output", folder / "barcodes.tsv", *QC_ARGS) == 2
    line = error_line(capsys, "qc")
    assert "is barcodes.tsv of the input folder (--input)" in line
    assert snapshot(folder) == before


def test_an_output_that_is_a_folder_is_refused(counts_file, tmp_path, capsys):
    (tmp_path / "folder.h5ad").mkdir()
    assert run_cli("qc", "--input", counts_file, "--output", tmp_path / "folder.h5ad", *QC_ARGS) == 2
    assert "is a folder: give the path of a file to write" in error_line(capsys, "qc")
    assert run_cli("simulate", "--n-cells", "20", "--output", tmp_path / "folder.h5ad", "--quiet") == 2
    assert "is a folder" in error_line(capsys, "simulate")
    assert list((tmp_path / "folder.h5ad").iterdir()) == []


@pytest.mark.parametrize("spelling", ["same", "symlink", "hardlink"])
def test_graph_refuses_to_write_over_its_input(spelling, tmp_path, capsys):
    source = tmp_path / "S.qc.h5ad"
    make_graph_adata(n_cells=30, n_genes=10).write_h5ad(source)
    output = {"same": source, "symlink": tmp_path / "l.h5ad", "hardlink": tmp_path / "h.h5ad"}[spelling]
    if spelling == "symlink":
        output.symlink_to(source)
    elif spelling == "hardlink":
        os.link(source, output)
    before = source.read_bytes()
    assert run_cli("graph", "--input", source, "--output", output, "--quiet") == 2
    assert "--output" in error_line(capsys, "graph")
    assert source.read_bytes() == before


@pytest.mark.parametrize(
    "paths, message",
    [
        ({"--output": "graph"}, "--output .* is the input \\(--input\\)"),
        ({"--model-out": "graph"}, "--model-out .* is the input \\(--input\\)"),
        ({"--model-out": "out"}, "--output and --model-out are the same file"),
        ({"--output": "model"}, "--output .* is the input \\(--resume\\)"),
    ],
)
def test_train_refuses_outputs_over_its_inputs(paths, message, trained, tmp_path, capsys):
    names = {"graph": trained.graph, "out": tmp_path / "new.h5ad", "model": trained.model}
    argv = {"--output": tmp_path / "new.h5ad", "--model-out": tmp_path / "new.pt", "--resume": trained.model}
    argv.update({flag: names[name] for flag, name in paths.items()})
    before = snapshot(trained.folder)
    assert run_cli("train", "--input", trained.graph, *[x for pair in argv.items() for x in pair], "--quiet") == 2
    assert re.search(message, error_line(capsys, "train"))
    assert snapshot(trained.folder) == before
    assert not (tmp_path / "new.h5ad").exists() and not (tmp_path / "new.pt").exists()


@pytest.mark.parametrize("case", ["default prefix", "given prefix", "prefix names another output"])
def test_export_refuses_to_write_over_its_input(case, trained, tmp_path, capsys):
    """``scdefr export --input S.h5ad --outdir .`` would write S.h5ad over its input."""
    name = {"default prefix": "s.h5ad", "given prefix": "t.h5ad", "prefix names another output": "t.metrics.json"}
    source = tmp_path / name[case]
    source.write_bytes(trained.output.read_bytes())
    prefix = [] if case == "default prefix" else ["--prefix", "t"]
    before = snapshot(tmp_path)
    assert run_cli("export", "--input", source, "--outdir", tmp_path, *prefix, "--quiet") == 2
    line = error_line(capsys, "export")
    assert f"--outdir/--prefix {source} is the input (--input)" in line
    assert snapshot(tmp_path) == before


def test_run_refuses_an_input_inside_the_results_it_replaces(tmp_path, capsys):
    sample = tmp_path / "out" / "s" / "export"
    sample.mkdir(parents=True)
    make_counts().write_h5ad(sample / "s.h5ad")
    before = snapshot(tmp_path)
    assert run_cli("run", "--input", sample / "s.h5ad", "--outdir", tmp_path / "out", "--sample", "s", "--quiet") == 2
    assert "whose results this run replaces" in error_line(capsys, "run")
    assert snapshot(tmp_path) == before


def test_same_file_sees_every_spelling(tmp_path, monkeypatch):
    target = tmp_path / "a" / "x.h5ad"
    target.parent.mkdir()
    target.write_text("x")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sym").symlink_to(target)
    os.link(target, tmp_path / "hard")
    for spelling in ("a/x.h5ad", "./a/../a/x.h5ad", str(target), "sym", "hard"):
        assert same_file(spelling, target), spelling
    assert not same_file("a/y.h5ad", target)
    assert same_file("a/new.h5ad", tmp_path / "a" / "new.h5ad")  # not existing yet, same path


# === 2. scdefr run: all or nothing per sample ============================================================
class Killed(BaseException):
    """Stands for SIGKILL: nothing in the process gets to clean up after it."""


def fake_steps(monkeypatch, tag: str, *, fail: str | None = None, error: BaseException | None = None, n_cells=30):
    """Replace the four steps by fast ones that write files marked ``tag`` where the real ones write;
    ``fail`` raises ``error`` in that step. Returns the steps called, in order."""
    calls = []
    real = runner.step_module

    def make(step):
        module = real(step)

        def step_main(args):
            calls.append(step)
            if step == fail:
                if callable(error) and not isinstance(error, BaseException):
                    error()
                raise error
            if step == "qc":
                adata = ad.AnnData(
                    np.zeros((n_cells, 2), dtype=np.float32),
                    obs=pd.DataFrame({"cell_type": ["a"] * n_cells}, index=[f"c{i}" for i in range(n_cells)]),
                )
                write_h5ad(adata, args.output)
                write_text(tag, Path(args.output).with_name("S.qc_summary.json"))
            elif step == "export":
                write_text(tag, Path(args.outdir) / f"{args.prefix}.clusters.csv")
                write_text(tag, Path(args.outdir) / f"{args.prefix}.metrics.json")
            else:
                write_text(tag, args.output)

        return SimpleNamespace(add_io_arguments=module.add_io_arguments, main=step_main)

    monkeypatch.setattr(runner, "step_module", make)
    return calls


def run_sample(counts: Path, outdir: Path, *extra) -> int:
    return run_cli("run", "--input", counts, "--outdir", outdir, "--sample", "s", "--quiet", *extra)


def results_of(outdir: Path) -> dict[str, bytes]:
    return snapshot(outdir / "s")


def test_a_successful_run_replaces_every_step_folder_whole(counts_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "first")
    assert run_sample(counts_file, out) == 0
    (out / "s" / "export" / "s.from_an_older_run.csv").write_text("stale")
    fake_steps(monkeypatch, "second")
    assert run_sample(counts_file, out) == 0
    files = results_of(out)
    assert sorted(name for name in files if "/" not in name) == ["export", "graph", "qc", "train"]  # nothing hidden
    assert "export/s.from_an_older_run.csv" not in files
    assert set(_written_by(files).values()) == {b"second"}


def _written_by(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files fake_steps marks with its tag (all but the QC h5ad and the folders)."""
    marked = {name: data for name, data in files.items() if data != b"<dir>" and not name.endswith(".qc.h5ad")}
    assert len(marked) == 5, sorted(marked)
    return marked


STEP_FAULTS = {
    "bad input": (lambda: ScdefrError("counts in x: negative values"), 2),
    "disk full": (lambda: OSError(errno.ENOSPC, "No space left on device", "x"), 4),
    "out of memory": (lambda: MemoryError(), 3),
    "permission": (lambda: PermissionError(errno.EACCES, "Permission denied", "x"), 4),
}


@pytest.mark.parametrize("step", runner.STEPS)
@pytest.mark.parametrize("fault", list(STEP_FAULTS))
def test_a_failed_run_leaves_the_previous_results_byte_for_byte(
    step, fault, counts_file, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    before = results_of(out)
    make_error, status = STEP_FAULTS[fault]
    calls = fake_steps(monkeypatch, "new", fail=step, error=make_error())
    capsys.readouterr()
    assert run_sample(counts_file, out) == status
    error_line(capsys, "run")
    assert calls == list(runner.STEPS[: runner.STEPS.index(step) + 1])
    assert results_of(out) == before  # no staging folder, no lock file, no new file beside old ones


@pytest.mark.parametrize("step", runner.STEPS)
def test_a_failed_first_run_leaves_no_folder_behind(step, counts_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "results" / "other").mkdir(parents=True)
    fake_steps(monkeypatch, "new", fail=step, error=ScdefrError("no"))
    assert run_sample(counts_file, tmp_path / "results") == 2
    assert run_sample(counts_file, tmp_path / "new" / "deep") == 2
    assert snapshot(tmp_path / "results") == {"other": b"<dir>"}  # the outdir it did not create stays
    assert not (tmp_path / "new").exists()  # the folders it created go


@pytest.mark.parametrize("signal_kind", ["ctrl-c", "sigterm"])
def test_an_interrupted_run_leaves_the_previous_results(signal_kind, counts_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    before = results_of(out)

    def interrupt():
        if signal_kind == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises during the sleep

    fake_steps(monkeypatch, "new", fail="train", error=interrupt)
    capsys.readouterr()
    assert run_sample(counts_file, out) == (130 if signal_kind == "ctrl-c" else 143)
    assert (
        capsys.readouterr().err.strip() == f"scdefr run: {'interrupted' if signal_kind == 'ctrl-c' else 'terminated'}"
    )
    assert results_of(out) == before
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was restored


@pytest.mark.parametrize("later", ["succeeds", "fails"])
def test_what_a_killed_run_left_is_removed_by_the_next_run(later, counts_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    before = results_of(out)
    for leftover in (".staging-elsewhere-12", ".staging-" + owner_tag(), ".previous-elsewhere-12"):
        (out / "s" / leftover / "qc").mkdir(parents=True)
        (out / "s" / leftover / "qc" / "s.qc.h5ad").write_text("half")
    (out / "s" / runner.LOCK_NAME).write_text("")  # a killed run leaves its lock file: nobody holds it
    fake_steps(monkeypatch, "new", fail=None if later == "succeeds" else "graph", error=ScdefrError("no"))
    assert run_sample(counts_file, out) == (0 if later == "succeeds" else 2)
    after = results_of(out)
    assert not [name for name in after if name.startswith(".")]
    if later == "fails":
        assert after == before


def test_a_run_killed_while_swapping_is_completed_by_the_next(counts_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    fake_steps(monkeypatch, "killed")
    real_rename, renames = os.rename, []

    def rename(source, target):
        renames.append(target)
        if len(renames) == 4:  # staging committed, qc replaced, graph moved aside: then SIGKILL
            raise Killed
        real_rename(source, target)

    monkeypatch.setattr(runner.os, "rename", rename)
    with pytest.raises(Killed):
        run_sample(counts_file, out)
    monkeypatch.setattr(runner.os, "rename", real_rename)
    assert any(name.startswith(".swap-") for name in os.listdir(out / "s"))
    fake_steps(monkeypatch, "later", fail="qc", error=ScdefrError("no"))
    assert run_sample(counts_file, out) == 2
    after = results_of(out)
    assert not [name for name in after if name.startswith(".")]
    assert set(_written_by(after).values()) == {b"killed"}  # it had finished every step: its swap is completed


def test_a_refused_rename_while_swapping_puts_the_previous_results_back(counts_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    before = results_of(out)
    fake_steps(monkeypatch, "new")
    real_rename, renames = os.rename, []

    def rename(source, target):
        renames.append(target)
        if len(renames) == 6:
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        real_rename(source, target)

    monkeypatch.setattr(runner.os, "rename", rename)
    capsys.readouterr()
    assert run_sample(counts_file, out) == 4
    assert "permission denied" in error_line(capsys, "run")
    assert results_of(out) == before


def test_two_runs_into_one_sample_are_kept_apart(counts_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    fake_steps(monkeypatch, "previous")
    assert run_sample(counts_file, out) == 0
    lock = os.open(out / "s" / runner.LOCK_NAME, os.O_CREAT | os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a run in progress holds it
    try:
        before = results_of(out)
        calls = fake_steps(monkeypatch, "new")
        capsys.readouterr()
        assert run_sample(counts_file, out) == 2
        assert "another 'scdefr run' is writing" in error_line(capsys, "run")
        assert calls == [] and results_of(out) == before
    finally:
        os.close(lock)


RUN_OPTION_ERRORS = {
    "device mps": (["--device", "mps"], "device (--device) must be auto, cpu, cuda or cuda:N, got 'mps'"),
    "device tpu": (["--device", "tpu"], "got 'tpu'"),
    "sigma": (["--sigma", "2"], "sigma (--sigma) must be <= 1"),
    "umap": (["--umap-max-cells", "1"], "umap_max_cells (--umap-max-cells)"),
    "neighbours": (["--n-neighbors", "1"], "n_neighbors (--n-neighbors)"),
    "widths": (["--hidden-dims", "8"], "hidden_dims (--hidden-dims)"),
    "counts": (["--min-counts", "5", "--max-counts", "2"], "max_counts (--max-counts)"),
    "sample newline": (["--sample", "abc\n"], "--sample 'abc\\n' must start with a letter or digit"),
    "label key blank": (["--label-key", " "], "label_key (--label-key)"),
}


@pytest.mark.parametrize("case", list(RUN_OPTION_ERRORS))
def test_run_refuses_bad_options_before_the_first_step(case, counts_file, tmp_path, monkeypatch, capsys):
    calls = fake_steps(monkeypatch, "new")
    extra, message = RUN_OPTION_ERRORS[case]
    argv = ["run", "--input", counts_file, "--outdir", tmp_path / "out", "--quiet", *extra]
    if "--sample" not in extra:
        argv += ["--sample", "s"]
    assert run_cli(*argv) == 2
    assert message in error_line(capsys, "run")
    assert calls == [] and not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_run_refuses_cuda_without_cuda_before_the_first_step(counts_file, tmp_path, monkeypatch, capsys):
    calls = fake_steps(monkeypatch, "new")
    assert run_sample(counts_file, tmp_path / "out", "--device", "cuda") == 2
    assert "device 'cuda' requested but CUDA is not available (use --device cpu or auto)" in error_line(capsys, "run")
    assert calls == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "n_cells, extra, message",
    [
        (5, ["--n-clusters", "6"], "--n-clusters 6 exceeds the 5 cells left after QC: ask for at most 5, or auto"),
        (30, ["--n-clusters", "100000"], "--n-clusters 100000 exceeds the 30 cells left after QC"),
        (2, [], "only 2 cells are left after QC: too few to choose K (--n-clusters auto)"),
        (30, ["--label-key", "no_such"], "label column 'no_such' is not in the input's obs (columns: cell_type)"),
    ],
)
def test_run_checks_what_qc_decides_before_graph_starts(
    n_cells, extra, message, counts_file, tmp_path, monkeypatch, capsys
):
    calls = fake_steps(monkeypatch, "new", n_cells=n_cells)
    assert run_sample(counts_file, tmp_path / "out", *extra) == 2
    assert message in error_line(capsys, "run")
    assert calls == ["qc"] and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_failed_reruns_leave_real_results_byte_for_byte(tmp_path, capsys):
    counts = tmp_path / "tiny.h5ad"
    make_counts(150, 120).write_h5ad(counts)
    fast = ["--n-top-genes", "60", "--n-pcs", "8", "--hidden-dims", "16,4", "--pretrain-epochs", "2", "--epochs", "1"]
    fast += ["--kmeans-n-init", "1", "--quiet"]
    assert run_cli("run", "--input", counts, "--outdir", tmp_path / "out", "--n-clusters", "2", *fast) == 0
    before = snapshot(tmp_path / "out")
    assert len([name for name in before if before[name] != b"<dir>"]) == 17
    for bad in (["--n-clusters", "100000"], ["--n-clusters", "2", "--label-key", "absent"], ["--device", "tpu"]):
        capsys.readouterr()
        assert run_cli("run", "--input", counts, "--outdir", tmp_path / "out", *fast, *bad) == 2
        error_line(capsys, "run")
        assert snapshot(tmp_path / "out") == before, bad


# === 3. Faults: one line, a status below 128, nothing half-written ========================================
def _partial_write_then(error: BaseException):
    """A write_h5ad that writes some bytes, then fails as the system would."""

    def write(self, path, **kwargs):
        Path(path).write_bytes(b"\x89HDF\r\n\x1a\n partial")
        raise error

    return write


H5AD_WRITE_FAULTS = {
    "disk full": (
        OSError(errno.ENOSPC, "No space left on device"),
        4,
        "no space left on the device ({out}/S.qc.h5ad): free disk space or write elsewhere",
    ),
    "disk full as h5py says it": (
        RuntimeError(
            "Can't decrement id ref count (file write failed: time = x, filename = 'y', file descriptor = 3, "
            "errno = 28, error message = 'No space left on device', buf = 0x1, total write size = 16)"
        ),
        4,
        "no space left on the device ({out}/S.qc.h5ad): free disk space or write elsewhere",
    ),
    "permission as h5py says it": (
        OSError("Unable to synchronously create file (unable to open file: name = 'x', errno = 13, error message)"),
        4,
        "permission denied ({out}/S.qc.h5ad): fix the permissions, or use files and folders you may read and write",
    ),
    "read-only file system": (
        OSError(errno.EROFS, "Read-only file system"),
        4,
        "read-only file system ({out}/S.qc.h5ad): write to a writable folder",
    ),
    "quota": (
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        4,
        "disk quota exceeded ({out}/S.qc.h5ad): free space in your quota or write elsewhere",
    ),
    "input/output error": (
        OSError(errno.EIO, "Input/output error"),
        4,
        "input/output error ({out}/S.qc.h5ad): check the disk or the network file system, then run it again",
    ),
    "out of memory": (MemoryError(), 3, "out of memory: run it with more memory"),
}


@pytest.mark.parametrize("fault", list(H5AD_WRITE_FAULTS))
def test_a_failed_h5ad_write_leaves_the_previous_outputs(fault, qc_done, counts_file, monkeypatch, capsys):
    before = snapshot(qc_done)
    error, status, message = H5AD_WRITE_FAULTS[fault]
    monkeypatch.setattr(ad.AnnData, "write_h5ad", _partial_write_then(error))
    assert run_cli("qc", "--input", counts_file, "--output", qc_done / "S.qc.h5ad", *QC_ARGS) == status
    assert message.format(out=qc_done) in error_line(capsys, "qc")
    assert snapshot(qc_done) == before  # no temporary file, no new summary or plot beside the old h5ad


@pytest.mark.parametrize("which", ["summary", "plot"])
def test_a_failed_side_file_write_leaves_all_three_outputs(which, qc_done, counts_file, monkeypatch, capsys):
    """The h5ad is written first; the summary or plot then fails: none of the three is replaced."""
    before = snapshot(qc_done)
    if which == "summary":
        real = Path.write_text
        monkeypatch.setattr(
            Path, "write_text", lambda self, *a, **k: disk_full() if self.name.endswith(".tmp") else real(self, *a, **k)
        )
    else:
        monkeypatch.setattr("matplotlib.figure.Figure.savefig", disk_full)
    assert run_cli("qc", "--input", counts_file, "--output", qc_done / "S.qc.h5ad", "--seed", "3", *QC_ARGS) == 4
    name = "S.qc_summary.json" if which == "summary" else "S.qc.png"
    assert f"no space left on the device ({qc_done / name})" in error_line(capsys, "qc")
    assert snapshot(qc_done) == before


def test_a_failed_write_removes_the_folders_it_created(counts_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "keep").mkdir()
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", disk_full)
    argv = ["qc", "--input", counts_file, "--output", tmp_path / "new" / "deep" / "S.qc.h5ad"]
    assert run_cli(*argv, "--summary", tmp_path / "keep" / "S.json", *QC_ARGS) == 4
    error_line(capsys, "qc")
    assert not (tmp_path / "new").exists() and list((tmp_path / "keep").iterdir()) == []


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(counts_file, tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("x")
    read = []
    monkeypatch.setattr("scdefr.io.read_counts", lambda *a, **k: read.append(a))
    assert run_cli("qc", "--input", counts_file, "--output", tmp_path / "file" / "sub" / "S.qc.h5ad", *QC_ARGS) == 2
    assert f"a file is in the way ({tmp_path / 'file'})" in error_line(capsys, "qc")
    assert read == []


@pytest.mark.parametrize("signal_kind", ["ctrl-c", "sigterm"])
def test_an_interrupted_write_leaves_no_temporary_file(signal_kind, qc_done, counts_file, monkeypatch, capsys):
    before = snapshot(qc_done)

    def interrupted(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        if signal_kind == "ctrl-c":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises during the sleep

    monkeypatch.setattr(ad.AnnData, "write_h5ad", interrupted)
    status = run_cli("qc", "--input", counts_file, "--output", qc_done / "S.qc.h5ad", *QC_ARGS)
    assert status == (130 if signal_kind == "ctrl-c" else 143)
    assert snapshot(qc_done) == before


def test_a_stale_temporary_file_of_a_killed_process_is_removed_on_the_next_write(tmp_path):
    final = tmp_path / "S.qc.h5ad"
    host = owner_tag().rpartition("-")[0]
    stale = tmp_path / f".S.qc.h5ad.{host}-{dead_pid()}.0badf00d.tmp"
    alive = tmp_path / f".S.qc.h5ad.{host}-{os.getppid()}.0badf00d.tmp"  # a live process: maybe writing now
    elsewhere = tmp_path / f".S.qc.h5ad.otherhost-{dead_pid()}.0badf00d.tmp"  # can't know: kept
    other_file = tmp_path / f".S.graph.h5ad.{host}-{dead_pid()}.0badf00d.tmp"  # another output's: kept
    for path in (stale, alive, elsewhere, other_file):
        path.write_bytes(b"half-written")
    write_text("result", final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [final.name, alive.name, elsewhere.name, other_file.name]
    )
    assert final.read_text() == "result"


def test_temporary_names_never_look_like_results(tmp_path, monkeypatch):
    """Hidden and ending in .tmp: no pattern of a result (the Nextflow modules' output globs) matches them."""
    seen = []

    def write(self, path, **kwargs):
        seen.append(Path(path).name)
        Path(path).write_bytes(b"x")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", write)
    write_h5ad(make_counts(5, 5), tmp_path / "S.h5ad")
    (name,) = seen
    assert re.fullmatch(r"\.S\.h5ad\." + re.escape(owner_tag()) + r"\.[0-9a-f]{8}\.tmp", name), name
    for pattern in ("S.*", "S*", "*.h5ad", "S.*.png", "S_*mqc.*", "*.json", "*.csv"):
        assert not fnmatch(name, pattern), pattern
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S.h5ad"]


def test_remove_stale_temporaries_ignores_unreadable_folders(tmp_path):
    remove_stale_temporaries(tmp_path / "absent" / "x.h5ad")  # no error: nothing to clean


def test_a_stale_scratch_folder_of_a_killed_process_is_removed(tmp_path):
    host = owner_tag().rpartition("-")[0]
    stale = tmp_path / f".simulate_{host}-{dead_pid()}.00ff00ff"
    (stale / "part").mkdir(parents=True)
    with scratch_dir(tmp_path, ".simulate_") as scratch:
        assert scratch.is_dir() and not stale.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_in_hdf5_ends_in_one_line_in_a_real_process(counts_file, tmp_path):
    """A file size limit makes HDF5 fail mid-file as a full disk does; h5py then leaves objects the
    HDF5 library used to crash on at exit (status 139 after hundreds of lines)."""
    out = tmp_path / "out"
    out.mkdir()

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    command = [sys.executable, "-m", "scdefr", "qc", "--input", str(counts_file), "--output", str(out / "S.qc.h5ad")]
    done = subprocess.run(
        [*command, "--n-top-genes", "140", "--compression", "none", "--quiet"],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"scdefr qc: error: file too large ({out / 'S.qc.h5ad'}): write where larger files are allowed, "
        "or raise the file size limit (ulimit -f)"
    ]
    assert list(out.iterdir()) == []


def test_a_read_only_folder_is_one_line_exit_4(counts_file, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        expected = "permission denied"
    else:  # root writes anywhere it may: a read-only mount is the one thing that stops it
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True
        )
        if mounted.returncode != 0:
            pytest.skip("root without permission to mount a read-only tmpfs")
        expected = "read-only file system"
    try:
        assert run_cli("qc", "--input", counts_file, "--output", folder / "S.qc.h5ad", *QC_ARGS) == 4
        assert f"{expected} ({folder})" in error_line(capsys, "qc")
        assert list(folder.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], check=False)
        else:
            folder.chmod(0o755)


def test_an_unreadable_input_is_a_system_refusal(counts_file, monkeypatch, tmp_path, capsys):
    import scdefr.io

    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(scdefr.io, "open", refuse, raising=False)
    assert run_cli("qc", "--input", counts_file, "--output", tmp_path / "o" / "S.qc.h5ad", *QC_ARGS) == 4
    assert f"permission denied ({counts_file})" in error_line(capsys, "qc")
    assert not (tmp_path / "o").exists()


def _numpy_out_of_memory(*args, **kwargs):
    return np.ones(1 << 47, dtype=np.float64)  # numpy's own MemoryError (a petabyte)


def test_a_full_disk_for_the_decompressed_copy_of_an_input_is_a_system_refusal(tmp_path, monkeypatch, capsys):
    import gzip

    with gzip.open(tmp_path / "counts.h5ad.gz", "wb") as handle:
        make_counts().write_h5ad(tmp_path / "plain.h5ad")
        handle.write((tmp_path / "plain.h5ad").read_bytes())
    monkeypatch.setattr("scdefr.io._readers.shutil.copyfileobj", disk_full)
    argv = ["qc", "--input", tmp_path / "counts.h5ad.gz", "--output", tmp_path / "o" / "S.qc.h5ad", *QC_ARGS]
    assert run_cli(*argv) == 4
    line = error_line(capsys, "qc")
    assert re.search(r"no space left on the device \(.*/input\.h5ad\): free disk space or write elsewhere$", line)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "where, error, status, message",
    [
        ("qc", MemoryError(), 3, "out of memory: run it with more memory"),
        ("qc", _numpy_out_of_memory, 3, "out of memory: run it with more memory"),
        ("read", MemoryError(), 3, "out of memory: run it with more memory"),
        (
            "train",
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: you tried"),
            3,
            "out of memory: run it with more memory",
        ),
        ("train", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB"), 3, "out of memory"),
        ("save", OSError(errno.ENOSPC, "No space left on device"), 4, "no space left on the device ({model})"),
    ],
)
def test_memory_and_disk_faults_in_each_step(
    where, error, status, message, trained, counts_file, tmp_path, monkeypatch, capsys
):
    def fail(*args, **kwargs):
        if callable(error) and not isinstance(error, BaseException):
            error()
        raise error

    out = tmp_path / "out"
    if where in ("qc", "read"):
        monkeypatch.setattr("scdefr.pp.qc" if where == "qc" else "scdefr.io._read_h5ad_counts", fail)
        argv = ["qc", "--input", counts_file, "--output", out / "S.qc.h5ad", *QC_ARGS]
    else:
        monkeypatch.setattr("scdefr.model.SCDEFR.fit" if where == "train" else "torch.save", fail)
        argv = ["train", "--input", trained.graph, "--output", out / "S.trained.h5ad", "--n-clusters", "3"]
        argv += TRAIN_ARGS
    assert run_cli(*argv) == status
    assert message.format(model=out / "S.model.pt") in error_line(capsys, argv[0])
    assert [p for p in out.rglob("*") if p.is_file()] == []  # nothing half-written, no temporary file


def test_memory_running_out_while_reading_a_step_input_is_not_called_corrupt(trained, tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("anndata.read_h5ad", fail)
    assert run_cli("train", "--input", trained.graph, "--output", tmp_path / "o.h5ad", *TRAIN_ARGS) == 3
    line = error_line(capsys, "train")
    assert "out of memory" in line and "corrupt" not in line


def test_a_killed_worker_process_is_reported_as_memory(tmp_path, monkeypatch, capsys):
    class BrokenPool:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, *args):
            raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr("scdefr.cli.simulate.ProcessPoolExecutor", BrokenPool)
    out = tmp_path / "sim.h5ad"
    assert run_cli("simulate", "--n-cells", "40", "--parts", "2", "--output", out, "--quiet") == 3
    assert "a worker process was killed (most often: out of memory)" in error_line(capsys, "simulate")
    assert list(tmp_path.iterdir()) == []  # the parts' scratch folder is gone too


def test_a_bug_is_not_dressed_up_as_a_user_error(counts_file, tmp_path, monkeypatch):
    monkeypatch.setattr("scdefr.pp.qc", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["qc", "--input", str(counts_file), "--output", str(tmp_path / "S.qc.h5ad"), "--quiet"])


@pytest.mark.slow
def test_a_failed_export_writes_none_of_its_files(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    assert run_cli("export", "--input", trained.output, "--outdir", out, "--prefix", "S", "--quiet") == 0
    before = snapshot(out)
    assert len(before) == 11
    monkeypatch.setattr("scdefr.pl.cluster_sizes", disk_full)
    assert run_cli("export", "--input", trained.output, "--outdir", out, "--prefix", "S", "--seed", "5", "--quiet") == 4
    assert f"no space left on the device ({out / 'S.cluster_sizes.png'})" in error_line(capsys, "export")
    assert snapshot(out) == before
    new = tmp_path / "new" / "export"
    assert run_cli("export", "--input", trained.output, "--outdir", new, "--prefix", "S", "--quiet") == 4
    error_line(capsys, "export")
    assert not (tmp_path / "new").exists()  # the folders it made for the files it could not write are gone


# === 3b. Damaged and foreign checkpoints ===================================================================
def _evil(marker: Path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Evil()


def _write_checkpoint(case: str, trained, path: Path, marker: Path) -> str:
    """Write the damaged checkpoint of ``case`` at ``path``; returns the text the one line must hold."""
    good = trained.model.read_bytes()
    done = torch.load(trained.model, weights_only=True)
    joint = copy.deepcopy(trained.joint)

    def save(state):
        torch.save(state, path)

    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return "cannot read checkpoint"
    if case == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return "cannot read checkpoint"
    if case == "empty file":
        path.write_bytes(b"")
        return "cannot read checkpoint"
    if case == "pickle with code":
        with open(path, "wb") as handle:
            pickle.dump({"format": checkpoint.FORMAT, "payload": _evil(marker)}, handle)
        return "cannot read checkpoint"
    if case == "zip pickle with code":
        save({"format": checkpoint.FORMAT, "payload": _evil(marker)})
        return "cannot read checkpoint"
    if case == "not a dict":
        save(torch.zeros(3))
        return "is not an scDEFR checkpoint"
    if case == "another program's":
        save({"model": {"w": torch.zeros(2)}, "epoch": 3})
        return "is not an scDEFR checkpoint"
    if case == "older format":
        save({**done, "format": "scdefr-checkpoint/1"})
        return f"has format 'scdefr-checkpoint/1', this version reads '{checkpoint.FORMAT}'"
    if case == "missing key":
        del done["optimizer"]
        save(done)
        return "is damaged (missing optimizer)"
    if case == "unknown key":
        save({**done, "extra": 1})
        return "is damaged (unknown extra)"
    if case == "wrong type":
        save({**done, "epoch": "3"})
        return "is damaged (unexpected type of epoch)"
    if case == "unknown phase":
        save({**done, "phase": "finetune"})
        return "unknown phase 'finetune'"
    if case == "negative epoch":
        save({**joint, "epoch": -2})
        return "negative epoch -2"
    if case == "centres in pre-training":
        save({**done, "phase": "pretrain"})
        return "3 cluster centres in phase pretrain"
    if case == "weights not tensors":
        done["state_dict"] = {key: value.tolist() for key, value in done["state_dict"].items()}
        save(done)
        return "weights that are not tensors"
    if case == "NaN weights":
        key = next(k for k, v in done["state_dict"].items() if v.is_floating_point())
        done["state_dict"][key] = torch.full_like(done["state_dict"][key], float("nan"))
        save(done)
        return "NaN or infinite weights"
    if case == "malformed history":
        save({**done, "history": {"pretrain": {"loss": ["x"]}, "joint": {}}})
        return "malformed loss history"
    if case == "cluster sizes of another K":
        save({**joint, "cluster_frequencies": {"q": [1.0, 2.0]}})
        return "malformed cluster frequencies"
    if case == "pre-trained embedding of other cells":
        save({**done, "pretrained_embedding": done["pretrained_embedding"][:-1]})
        rows, dims = done["pretrained_embedding"].shape
        return f"pre-trained embedding of shape ({rows - 1}, {dims}) in phase done"
    if case == "unknown option":
        done["options"]["network"]["attention_heads"] = 4
        save(done)
        return "does not store this version's options (unknown: attention_heads)"
    if case == "missing option":
        del done["options"]["training"]["lr"]
        save(done)
        return "does not store this version's options (missing: lr)"
    if case == "impossible option":
        done["options"]["network"]["sigma"] = 5.0
        save(done)
        return "stores an impossible option: sigma (--sigma) must be <= 1"
    if case == "missing option group":
        del done["options"]["clusters"]
        save(done)
        return "stores options this version cannot use (clusters)"
    if case == "no seed":
        del done["options"]["seed"]
        save(done)
        return "stores no usable seed"
    if case == "changed shape":
        key = next(k for k, v in done["state_dict"].items() if v.ndim == 2)
        done["state_dict"][key] = torch.zeros(done["state_dict"][key].shape[0] + 1, done["state_dict"][key].shape[1])
        save(done)
        return f"does not fit the network it describes (other shape of {key})"
    if case == "missing weight":
        key = sorted(done["state_dict"])[0]
        del done["state_dict"][key]
        save(done)
        return f"does not fit the network it describes (missing {key})"
    if case == "optimiser of another network":
        state = joint["optimizer"]["state"]
        index = next(iter(state))
        state[index]["exp_avg"] = torch.zeros(7, 7)
        save(joint)
        return "holds an optimiser state that does not fit its network"
    if case == "optimiser of fewer parameters":
        joint["optimizer"]["param_groups"][0]["params"] = joint["optimizer"]["param_groups"][0]["params"][:-1]
        save(joint)
        return "holds an optimiser state that does not fit its network"
    if case == "other cells":
        return "was trained on other cells or genes than this input"
    if case == "a folder":
        path.mkdir()
        return "is not a file"
    if case == "absent":
        return "does not exist"
    raise ValueError(case)


CHECKPOINT_CASES = [
    "truncated",
    "random bytes",
    "empty file",
    "pickle with code",
    "zip pickle with code",
    "not a dict",
    "another program's",
    "older format",
    "missing key",
    "unknown key",
    "wrong type",
    "unknown phase",
    "negative epoch",
    "centres in pre-training",
    "weights not tensors",
    "NaN weights",
    "malformed history",
    "cluster sizes of another K",
    "pre-trained embedding of other cells",
    "unknown option",
    "missing option",
    "impossible option",
    "missing option group",
    "no seed",
    "changed shape",
    "missing weight",
    "optimiser of another network",
    "optimiser of fewer parameters",
    "other cells",
    "a folder",
    "absent",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_damaged_or_foreign_checkpoint_is_refused_in_one_line(case, trained, tmp_path, capsys):
    bad, marker = tmp_path / "bad.pt", tmp_path / "code_ran"
    expected = _write_checkpoint(case, trained, bad, marker)
    graph = trained.graph
    if case == "other cells":
        other = ad.read_h5ad(trained.graph)
        other.obs_names = [f"other{i}" for i in range(other.n_obs)]
        graph = tmp_path / "other.graph.h5ad"
        other.write_h5ad(graph)
        bad = trained.model
    before = snapshot(trained.folder)
    out = tmp_path / "out"
    argv = ["train", "--input", graph, "--output", out / "S.trained.h5ad", "--resume", bad, *TRAIN_ARGS]
    assert run_cli(*argv) == 2
    line = error_line(capsys, "train")
    assert expected in line, line
    assert not marker.exists()  # the pickled code never ran
    assert not out.exists() and snapshot(trained.folder) == before


def test_an_unreadable_checkpoint_is_a_system_refusal(trained, tmp_path, monkeypatch, capsys):
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path) == str(trained.model):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", refuse)
    argv = ["train", "--input", trained.graph, "--output", tmp_path / "o.h5ad", "--resume", trained.model, *TRAIN_ARGS]
    assert run_cli(*argv) == 4
    assert f"permission denied ({trained.model})" in error_line(capsys, "train")


def test_a_run_resumed_in_place_goes_on_saving_into_its_checkpoint(trained, tmp_path):
    """--model-out may be the --resume checkpoint: the only path that may be both read and written."""
    resumable = tmp_path / "S.model.pt"
    torch.save(trained.joint, resumable)
    argv = ["train", "--input", trained.graph, "--output", tmp_path / "S.trained.h5ad", "--resume", resumable]
    assert run_cli(*argv, *TRAIN_ARGS) == 0  # --model-out defaults to S.model.pt: the checkpoint itself
    assert torch.load(resumable, weights_only=True)["phase"] == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["S.model.pt", "S.trained.h5ad"]


def test_a_checkpoint_records_its_format_and_every_option(trained):
    saved = torch.load(trained.model, weights_only=True)
    assert saved["format"] == checkpoint.FORMAT
    for key, group in checkpoint.STORED_GROUPS.items():
        assert set(saved["options"][key]) == set(group.names()), key
    assert isinstance(saved["options"]["seed"], int)


# === 4. Names are checked whole =============================================================================
BAD_NAMES = ["abc\n", "abc\r", "a b", "a/b", "../escape", ".hidden", "-dash", "", "a\tb", "é", "a;b", "pbmc(1)", "x*"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_sample_names_are_refused_whole(name, counts_file, tmp_path, capsys):
    assert run_cli("run", "--input", counts_file, "--outdir", tmp_path / "out", f"--sample={name}", "--quiet") == 2
    assert error_line(capsys, "run").endswith(
        f"--sample {name!r} must start with a letter or digit and use only letters, digits, '.', '_' and '-'"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("file_name", ["pbmc(1).h5ad", "my sample.h5ad", "x\n.h5ad", ".hidden.h5ad", "ü.csv"])
def test_a_name_taken_from_a_file_name_says_to_pass_sample(file_name, tmp_path, capsys):
    counts = tmp_path / file_name
    make_counts().write_h5ad(counts) if file_name.endswith(".h5ad") else counts.write_text("cell,g\nc,1\n")
    assert run_cli("run", "--input", counts, "--outdir", tmp_path / "out", "--quiet") == 2
    line = error_line(capsys, "run")
    assert f"taken from {file_name!r}" in line and line.endswith("pass --sample NAME to name it")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["pbmc", "pbmc_1.v2-a", "S1", "0"])
def test_good_names_are_accepted(name, counts_file, tmp_path):
    args = SimpleNamespace(input=counts_file, outdir=tmp_path, sample=name, device="cpu")
    assert runner.check_run(args) == (counts_file, name)


@pytest.mark.parametrize("prefix", ["s\n", "a/b", "a b", ""])
def test_export_prefixes_are_checked_whole(prefix, trained, tmp_path, capsys):
    argv = ["export", "--input", trained.output, "--outdir", tmp_path / "out", f"--prefix={prefix}", "--quiet"]
    assert run_cli(*argv) == 2
    assert f"--prefix {prefix!r} must start with a letter or digit" in error_line(capsys, "export")
    assert not (tmp_path / "out").exists()


def test_an_export_prefix_taken_from_a_file_name_says_to_pass_prefix(trained, tmp_path, capsys):
    source = tmp_path / "my sample.trained.h5ad"
    source.write_bytes(trained.output.read_bytes())
    assert run_cli("export", "--input", source, "--outdir", tmp_path / "out", "--quiet") == 2
    assert error_line(capsys, "export").endswith(
        "the name 'my sample' taken from 'my sample.trained.h5ad' must start with a letter or digit and use only "
        "letters, digits, '.', '_' and '-': pass --prefix NAME to name it"
    )


def test_the_python_export_checks_its_prefix_whole(tmp_path):
    from scdefr.export import export

    adata = ad.read_h5ad(make_trained_stub(tmp_path))
    with pytest.raises(ScdefrError, match="prefix 'x\\\\n' must start"):
        export(adata, tmp_path / "out", "x\n")
    assert not (tmp_path / "out").exists()


def make_trained_stub(tmp_path: Path) -> Path:
    adata = make_graph_adata(n_cells=20, n_genes=5)
    adata.obsm["X_scdefr"] = np.zeros((20, 2), dtype=np.float32)
    adata.obsm["scdefr_soft"] = np.full((20, 2), 0.5, dtype=np.float32)
    adata.obs["scdefr_cluster"] = pd.Categorical(["0"] * 20)
    adata.uns["scdefr"] = {"n_clusters": 2}
    path = tmp_path / "stub.h5ad"
    adata.write_h5ad(path)
    return path


def test_check_name_matches_the_whole_name():
    assert check_name("abc", "--sample") == "abc"
    for name in ("abc\n", "abc\n\n", "a\nb"):
        with pytest.raises(ScdefrError):
            check_name(name, "--sample")


# === 5. Nothing done to the data without a word ===============================================================
def test_k_raised_to_two_is_said(caplog):
    from scdefr.clustering import estimate_n_clusters

    blob = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        k, info = estimate_n_clusters(blob, resolution=0.01, seed=0)
    assert k == 2 and info["communities_counted"] == 1
    assert info["note"] == (
        f"Leiden found 1 communities of at least {info['min_cluster_size']} cells; "
        "K raised to 2, the nearest K in 2..30"
    )
    assert info["note"] in caplog.text


def test_k_clipped_to_max_clusters_is_said(caplog):
    from scdefr.clustering import estimate_n_clusters

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=50, size=(6, 4))
    blobs = np.concatenate([c + rng.normal(size=(60, 4)) for c in centres]).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        k, info = estimate_n_clusters(blobs, resolution=1.0, max_clusters=3, seed=0)
    assert k == 3 and info["communities_counted"] > 3
    assert "K clipped to 3, the nearest K in 2..3 (--max-clusters)" in info["note"]


@pytest.mark.parametrize("n_clusters, effect", [(2, "merge groups the cells form apart"), (6, None), (12, "split")])
def test_a_given_k_far_from_the_groups_the_embedding_forms_is_said(caplog, n_clusters, effect):
    from scdefr.clustering import compare_given_k

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=50, size=(6, 4))
    blobs = np.concatenate([c + rng.normal(size=(60, 4)) for c in centres]).astype(np.float32)
    with caplog.at_level(logging.WARNING):
        comparison = compare_given_k(blobs, n_clusters, resolution=0.5, seed=0)
    assert comparison["communities_counted"] == 6
    if effect is None:
        assert "note" not in comparison and not caplog.records
    else:
        assert comparison["note"].startswith(f"{n_clusters} clusters were asked for, but the pre-trained embedding ")
        assert effect in comparison["note"] and comparison["note"] in caplog.text


def test_a_changed_k_reaches_uns_scdefr_notes():
    from scdefr import tl

    adata = make_graph_adata(n_cells=120, n_genes=20, n_types=4)
    tl.scdefr(adata, "auto", max_clusters=2, seed=0, **QUICK)
    choice = adata.uns["scdefr"]["n_clusters_choice"]
    if choice["communities_counted"] == 2:
        pytest.skip("Leiden found exactly two communities here: nothing was changed")
    assert list(adata.uns["scdefr"]["notes"]) == [choice["note"]]


def test_no_note_when_nothing_was_changed():
    from scdefr import tl

    adata = make_graph_adata(n_cells=60, n_genes=20, n_types=3)
    tl.scdefr(adata, 3, seed=0, **QUICK)
    assert list(adata.uns["scdefr"]["notes"]) == []


def test_clusters_of_a_few_cells_are_named_in_the_log_and_the_notes(caplog):
    from scdefr import tl
    from scdefr.readout import SMALL_CLUSTER_CELLS

    adata = make_graph_adata(n_cells=60, n_genes=20, n_types=3)
    with caplog.at_level(logging.WARNING):
        tl.scdefr(adata, 12, seed=0, **QUICK)  # 60 cells in 12 clusters: some hold under 10
    sizes = adata.obs["scdefr_cluster"].value_counts()
    small = sizes[sizes < SMALL_CLUSTER_CELLS]
    # first the note that 12 is far from the groups the 3 planted types form, then the small clusters
    far_from_formed, small_clusters = adata.uns["scdefr"]["notes"]
    assert far_from_formed == adata.uns["scdefr"]["n_clusters_choice"]["note"] and far_from_formed in caplog.text
    assert not small.empty and small_clusters in caplog.text
    assert small_clusters.startswith(f"{len(small)} of 12 clusters hold fewer than {SMALL_CLUSTER_CELLS} cells: ")
    assert all(f"{name} ({count})" in small_clusters for name, count in small.items())


def test_the_small_clusters_note_counts_each_cluster():
    from scdefr.readout import small_clusters_note

    clusters = pd.Categorical(["0"] * 30 + ["1"] * 10 + ["2"] * 9 + ["3"], categories=["0", "1", "2", "3"])
    assert small_clusters_note(clusters).startswith("2 of 4 clusters hold fewer than 10 cells: 2 (9), 3 (1); ")
    assert small_clusters_note(pd.Categorical(["0"] * 10 + ["1"] * 12)) is None


@pytest.mark.parametrize(
    "stored, value, rounded",
    [
        ("int64", 2**24 + 1, True),
        ("float64", 2**24 + 3, True),
        ("int64", 2**25, False),  # float32 holds this one exactly
        ("int64", 2**24, False),
    ],
)
def test_counts_float32_cannot_hold_are_reported(stored, value, rounded, tmp_path, caplog):
    from scdefr.io import read_counts

    counts = make_counts(60, 50)
    matrix = counts.X.toarray().astype(stored)
    matrix[3, 7] = value
    counts.X = sparse.csr_matrix(matrix)
    counts.write_h5ad(tmp_path / "big.h5ad")
    with caplog.at_level(logging.WARNING):
        adata = read_counts(tmp_path / "big.h5ad")
    notes = list(adata.uns["scdefr_input"]["notes"])
    if rounded:
        assert notes == [
            f"1 count(s) above 2^24 (largest {value}) were rounded to the nearest float32 value "
            "(relative change below 6e-8): the steps store counts as float32"
        ]
        assert notes[0] in caplog.text
        assert float(adata.X[3, 7]) == float(np.float32(value)) != value
    else:
        assert notes == [] and float(adata.X[3, 7]) == value


def test_large_counts_in_a_table_and_in_float32_are_reported(tmp_path):
    from scdefr.io import read_counts

    table = pd.DataFrame(make_counts(30, 20).X.toarray(), index=[f"cell{i}" for i in range(30)])
    table.columns = [f"Gene{j}" for j in range(20)]
    table = table.astype(np.int64)
    table.iloc[0, 0] = 2**24 + 1
    table.to_csv(tmp_path / "t.csv")
    assert (
        "1 count(s) above 2^24 (largest 16777217) were rounded"
        in read_counts(tmp_path / "t.csv").uns["scdefr_input"]["notes"][0]
    )
    stored = make_counts(30, 20)
    stored.X = stored.X.astype(np.float32)
    stored.X[0, 0] = 2**25 + 4  # already float32: what it held before cannot be known
    stored.write_h5ad(tmp_path / "f.h5ad")
    assert "may have been rounded" in read_counts(tmp_path / "f.h5ad").uns["scdefr_input"]["notes"][0]


def test_duplicate_gene_names_made_unique_are_said_and_reach_the_qc_output(tmp_path, capsys):
    counts = make_counts(80, 60)
    counts.var_names = [*counts.var_names[:-4], "MT-CO1", "Gene1", "Gene1", "Gene2"]
    counts.write_h5ad(tmp_path / "dup.h5ad")
    argv = ["qc", "--input", tmp_path / "dup.h5ad", "--output", tmp_path / "o" / "S.qc.h5ad", "--n-top-genes", "50"]
    assert run_cli(*argv) == 0
    note = "3 duplicate gene name(s) made unique by appending -1, -2, ... (e.g. 'Gene1' -> 'Gene1-1')"
    assert f"WARNING scdefr.io._readers: dup.h5ad: {note}" in capsys.readouterr().err
    qc = ad.read_h5ad(tmp_path / "o" / "S.qc.h5ad")
    assert list(qc.uns["scdefr_qc"]["notes"])[0] == note
    assert list(qc.uns["scdefr_qc"]["input"]["notes"]) == [note]


def test_cells_and_genes_dropped_by_qc_are_said_plainly(counts_file, tmp_path, capsys):
    threshold = int(np.median(np.diff(make_counts().X.indptr))) + 1  # drops about half the cells
    argv = ["qc", "--input", counts_file, "--output", tmp_path / "o" / "S.qc.h5ad", "--min-genes", threshold]
    assert run_cli(*argv, "--n-top-genes", "50") == 0
    log = capsys.readouterr().err
    summary = json.loads((tmp_path / "o" / "S.qc_summary.json").read_text())
    kept = summary["output"]["cells"]
    after_min_genes = summary["steps"]["min_genes"]["cells"]
    assert after_min_genes < 120
    cells_note, genes_note = summary["notes"]
    assert cells_note.startswith(
        f"kept {kept} of 120 cells; dropped {120 - after_min_genes} with fewer than {threshold} genes detected"
    )
    assert genes_note.startswith("kept 50 of 150 genes; dropped ")
    assert "not among the 50 most variable (--n-top-genes)" in genes_note
    assert f"QC {cells_note}" in log and f"QC {genes_note}" in log
    assert list(ad.read_h5ad(tmp_path / "o" / "S.qc.h5ad").uns["scdefr_qc"]["notes"]) == summary["notes"]


def test_fewer_genes_than_asked_for_is_said(counts_file, tmp_path):
    argv = ["qc", "--input", counts_file, "--output", tmp_path / "S.qc.h5ad", "--n-top-genes", "5000", "--quiet"]
    assert run_cli(*argv) == 0
    summary = json.loads((tmp_path / "S.qc_summary.json").read_text())
    genes = summary["output"]["genes"]
    assert summary["notes"][-1] == f"{genes} genes kept, fewer than --n-top-genes 5000: too few genes passed"


def test_cells_left_without_counts_are_said(tmp_path):
    from scdefr import pp

    counts = make_counts(60, 50)
    matrix = counts.X.toarray()
    matrix[0] = 0
    matrix[0, 40] = 1  # its only count is in a gene detected nowhere else
    matrix[1:, 40] = 0
    counts.X = sparse.csr_matrix(matrix)
    result = pp.qc(counts, min_genes=0, min_counts=0, min_cells=2, n_top_genes=20)
    assert "1 with no counts left in the kept genes" in result.uns["scdefr_qc"]["notes"][0]

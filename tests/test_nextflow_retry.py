"""A retried training task resumes from its checkpoint and ends where an uninterrupted one ends;
CUDA out of memory and spot preemptions are retried (conf/base.config, the executor profiles).

The train module's script block, rendered by the Groovy harness with --checkpoint_dir, runs with
bash in a task folder; attempt 1 is killed (SIGKILL, as the OOM killer or a reclaimed VM would) after
it has written a checkpoint, attempt 2 runs in a fresh folder as Nextflow's retry does."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nextflow import harness, render

ROOT = harness.ROOT
DATA = ROOT / "assets/test_data/sim_300x500.h5ad"
META = {"id": "sim"}
ENV = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
# Small and quick, long enough that a kill lands mid-run: 30 + 5 epochs on 300 cells
TRAINING = {
    "n_clusters": "4",
    "hidden_dims": "64,16",
    "pretrain_epochs": 30,
    "epochs": 5,
    "checkpoint_every": 1,
    "seed": 0,
}

pytestmark = pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))


def _setting(name, labels, task, profiles=(), workflow=None):
    return harness.call(
        "setting",
        {
            "configs": ["nextflow.config"],
            "profiles": list(profiles),
            "process": "SCDEFR_TRAIN",
            "labels": labels,
            "setting": name,
            "task": task,
            "workflow": workflow or {"profile": ",".join(profiles)},
            "project_dir": str(ROOT),
        },
    )


@pytest.mark.parametrize(
    ("status", "strategy"),
    [
        (3, "retry"),  # memory ran out inside the step (scdefr's status, CUDA's out of memory too)
        (137, "retry"),  # SIGKILL: memory limit, a reclaimed spot instance
        (143, "retry"),  # SIGTERM: AWS Batch spot reclaim, Slurm preemption
        (50001, "retry"),  # Google Batch: the spot VM was preempted
        (1, "finish"),  # a crash is not retried
        (2, "finish"),  # bad input or options: one clear line, not retried
    ],
)
def test_the_training_step_retries_what_a_new_attempt_can_fix(status, strategy):
    labels = ["process_medium", "process_gpu"]
    assert _setting("errorStrategy", labels, {"exitStatus": status}) == strategy
    assert _setting("maxRetries", labels, {}) >= 2


def test_spot_preemptions_are_rerun_by_the_batch_executors():
    google = harness.call(
        "config", {"configs": ["nextflow.config"], "profiles": ["google"], "project_dir": str(ROOT), "env": {}}
    )
    assert google["config"]["google"]["batch"]["spot"] is True
    assert google["config"]["google"]["batch"]["maxSpotAttempts"] >= 1
    assert 50001 in google["config"]["google"]["batch"]["autoRetryExitCodes"]
    aws = harness.call(
        "config", {"configs": ["nextflow.config"], "profiles": ["awsbatch"], "project_dir": str(ROOT), "env": {}}
    )
    assert aws["config"]["aws"]["batch"]["maxSpotAttempts"] >= 1


def _train_script():
    spec = importlib.util.spec_from_file_location("scdefr_train_bin", ROOT / "bin" / "scdefr_train.py")
    sys.path.insert(0, str(ROOT / "bin"))
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bin"))
    return module


def test_cuda_out_of_memory_exits_with_the_retried_status_and_one_line(monkeypatch, capsys, tmp_path):
    """The step's command line turns CUDA's out-of-memory error into one line and status 3, which the
    training step retries; any other crash keeps its traceback."""
    torch = pytest.importorskip("torch")
    from scdefr import tl
    from scdefr.cli import main

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 22.05 GiB total)")

    graph = ROOT / "assets" / "test_data" / "sim_300x500.h5ad"
    monkeypatch.setattr(tl, "scdefr", out_of_memory)
    assert main(["train", "--input", str(graph), "--output", str(tmp_path / "y.h5ad"), "--quiet"]) == 3
    assert _setting("errorStrategy", ["process_medium", "process_gpu"], {"exitStatus": 3}) == "retry"
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "out of memory" in error[0] and "--batch-size" in error[0]

    def crash(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(tl, "scdefr", crash)
    with pytest.raises(RuntimeError):
        main(["train", "--input", str(graph), "--output", str(tmp_path / "y.h5ad"), "--quiet"])


def test_a_bucket_checkpoint_dir_needs_fusion(capsys):
    script = _train_script()
    if Path("/fusion").exists():
        pytest.skip("this machine has a /fusion mount")
    assert script.train(["--checkpoint-dir", "s3://bucket/checkpoints", "--input", "x.h5ad", "--output", "y.h5ad"]) == 2
    assert "needs Fusion" in capsys.readouterr().err


def test_a_checkpoint_is_resumed_only_by_the_same_input_and_training_options(tmp_path):
    pytest.importorskip("scdefr.cli")
    script = _train_script()
    counts = tmp_path / "s.graph.h5ad"
    counts.write_bytes(b"one input")
    base = ["--input", str(counts), "--output", "s.trained.h5ad", "--model-out", "s.model.pt", "--seed", "0"]
    name, model_out = script.checkpoint_name(base)
    assert model_out == Path("s.model.pt") and name.startswith("s.model.") and name.endswith(".pt")
    # what a retry may change (more CPUs, another GPU, how often to save) keeps the name
    for runtime in (["--threads", "12"], ["--device", "cuda"], ["--checkpoint-every", "5"], ["--compression", "none"]):
        assert script.checkpoint_name([*base, *runtime])[0] == name, runtime
    # anything that shapes the training gives another run
    for option in (["--seed", "1"], ["--epochs", "3"], ["--n-clusters", "5"], ["--hidden-dims", "32,8"]):
        assert script.checkpoint_name([*base, *option])[0] != name, option
    counts.write_bytes(b"another input")
    assert script.checkpoint_name(base)[0] != name


@pytest.fixture(scope="module")
def graph_input(tmp_path_factory):
    """The test profile's sample through `scdefr qc` and `scdefr graph` (the train step's input)."""
    folder = tmp_path_factory.mktemp("retry_input")
    scdefr = str(Path(sys.executable).parent / "scdefr")
    environment = {**os.environ, **ENV}
    for command in (
        [
            scdefr,
            "qc",
            "--input",
            str(DATA),
            "--output",
            str(folder / "sim.qc.h5ad"),
            "--n-top-genes",
            "300",
            "--threads",
            "1",
        ],
        [
            scdefr,
            "graph",
            "--input",
            str(folder / "sim.qc.h5ad"),
            "--output",
            str(folder / "sim.graph.h5ad"),
            "--n-pcs",
            "20",
            "--threads",
            "1",
        ],
    ):
        subprocess.run(command, check=True, capture_output=True, env=environment)
    return folder / "sim.graph.h5ad"


def _task(graph, checkpoint_dir):
    params = {**TRAINING, "checkpoint_dir": str(checkpoint_dir) if checkpoint_dir else None}
    return render.render_task("SCDEFR_TRAIN", [[META, graph]], cpus=1, params=params)


def _phase(checkpoint: Path):
    import torch

    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - being replaced right now
        return None
    return saved["phase"], int(saved["epoch"])


@pytest.mark.slow
def test_a_killed_attempt_resumes_and_ends_as_an_uninterrupted_run(graph_input, tmp_path):
    anndata = pytest.importorskip("anndata")
    import numpy as np

    # An uninterrupted run: no checkpoint folder, nothing to resume
    reference = render.stage(_task(graph_input, None), tmp_path / "uninterrupted")
    render.execute(_task(graph_input, None), reference, env=ENV)

    checkpoints = tmp_path / "checkpoints"
    task = _task(graph_input, checkpoints)
    assert f"--checkpoint-dir '{checkpoints}'" in task.script and "--checkpoint-every '1'" in task.script

    # Attempt 1, killed once it has saved a few epochs
    first = render.stage(task, tmp_path / "attempt1")
    running = subprocess.Popen(
        [*render.SHELL, ".command.sh"],
        cwd=first,
        env={**os.environ, **ENV, "PATH": f"{ROOT / 'bin'}{os.pathsep}{ENV['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline, killed_at = time.monotonic() + 300, None
    while time.monotonic() < deadline and running.poll() is None:
        saved = [_phase(p) for p in checkpoints.glob("*.pt")] if checkpoints.is_dir() else []
        if any(s and s[0] == "pretrain" and s[1] >= 3 for s in saved):
            os.killpg(running.pid, signal.SIGKILL)
            killed_at = saved
            break
        time.sleep(0.01)
    running.wait(timeout=60)
    assert killed_at, (
        f"attempt 1 ended ({running.returncode}) before it could be killed: {running.stderr.read()[-2000:]}"
    )
    assert running.returncode == -signal.SIGKILL
    assert not (first / "sim.trained.h5ad").exists() and not (first / "sim.model.pt").exists()
    (checkpoint,) = checkpoints.glob("*.pt")
    assert _phase(checkpoint)[0] == "pretrain"  # mid-run: attempt 2 has work left

    # Attempt 2: a fresh task folder, the same script
    second = render.stage(_task(graph_input, checkpoints), tmp_path / "attempt2")
    done = render.execute(_task(graph_input, checkpoints), second, env=ENV)
    assert f"resuming from {checkpoint}" in done.stderr
    assert _phase(checkpoint) == ("done", 0)
    assert render.collect_outputs(task, second)["model"] == [second / "sim.model.pt"]

    resumed, uninterrupted = (
        anndata.read_h5ad(second / "sim.trained.h5ad"),
        anndata.read_h5ad(reference / "sim.trained.h5ad"),
    )
    assert list(resumed.obs["scdefr_cluster"]) == list(uninterrupted.obs["scdefr_cluster"])
    assert np.array_equal(resumed.obsm["X_scdefr"], uninterrupted.obsm["X_scdefr"])  # bitwise, CPU, one thread
    assert np.array_equal(resumed.obsm["scdefr_soft"], uninterrupted.obsm["scdefr_soft"])

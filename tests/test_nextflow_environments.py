"""Software environments a user can get: conda environments from public conda-forge packages with
the step code from the pipeline itself, and step images named through a registry setting that
containers/build.sh can build and push."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import tomllib
import yaml
from nextflow import harness

ROOT = harness.ROOT
STEPS = ("qc", "graph", "train", "export")
# conda-forge names of the PyPI distributions pyproject.toml depends on
CONDA_NAMES = {"matplotlib": "matplotlib-base", "igraph": "python-igraph", "torch": "pytorch"}


def _pins() -> dict[str, str]:
    """requirements/constraints.txt (the tested versions) and the Makefile's torch pin."""
    pins = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower()] = version
    pins["torch"] = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    return pins


def _dependencies() -> list[str]:
    """pyproject's runtime dependencies, by distribution name."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() for requirement in declared]


@pytest.mark.parametrize("step", STEPS)
def test_conda_environment_holds_public_packages_pinned_as_tested(step):
    environment = yaml.safe_load((ROOT / f"modules/local/scdefr/{step}/environment.yml").read_text())
    assert set(environment["channels"]) <= {"conda-forge", "bioconda"}
    entries = environment["dependencies"]
    assert all(isinstance(entry, str) for entry in entries), "no pip section: every package from a conda channel"
    packages = {}
    for entry in entries:
        channel, spec = entry.split("::")
        assert channel in environment["channels"], entry
        name, version, *build = spec.split("=")
        packages[name] = (version, build)
    assert "scdefr" not in packages  # the step code is the pipeline's own (bin/ imports src/)
    assert packages["python"][0] == "3.11"
    pins = _pins()
    for dependency in _dependencies():
        conda_name = CONDA_NAMES.get(dependency, dependency)
        if dependency == "torch" and step != "train":
            assert conda_name not in packages, "torch only in the training environment"
            continue
        assert packages[conda_name][0] == pins[dependency], (
            f"{step}: {conda_name} {packages[conda_name]} vs tested {pins[dependency]}"
        )
    if step == "train":
        assert packages["pytorch"][1] == ["cpu_*"], "the CPU build of pytorch, not a multi-GB CUDA one"
    assert entries == sorted(entries), "nf-core lint sorts them (and rewrites the file otherwise)"


def test_step_scripts_run_the_pipeline_s_own_package_when_none_is_installed(tmp_path):
    """As in a conda environment: the dependencies importable, scdefr not installed (-S skips the
    virtualenv's .pth that points at src/), so bin/scdefr_bin.py must find ../src itself."""
    environment = {
        **os.environ,
        "PYTHONPATH": sysconfig.get_paths()["purelib"] + os.pathsep + sysconfig.get_paths()["platlib"],
    }
    not_installed = subprocess.run(
        [sys.executable, "-S", "-c", "import scdefr"], cwd=tmp_path, env=environment, capture_output=True
    )
    assert not_installed.returncode != 0
    for step in STEPS:
        version = subprocess.run(
            [sys.executable, "-S", str(ROOT / "bin" / f"scdefr_{step}.py"), "--version"],
            cwd=tmp_path,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        assert (
            version.stdout.strip()
            == f"scdefr {tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']}"
        )
    helped = subprocess.run(
        [sys.executable, "-S", str(ROOT / "bin" / "scdefr_qc.py"), "--help"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert helped.returncode == 0 and "--n-top-genes" in helped.stdout, helped.stderr[-2000:]


@pytest.mark.skipif(harness.available() is not None, reason=str(harness.available()))
def test_images_are_named_through_the_registry_setting():
    from nextflow import render

    for process in ("SCDEFR_QC", "SCDEFR_GRAPH", "SCDEFR_TRAIN", "SCDEFR_EXPORT"):
        task = render.render_task(process, [[{"id": "s1"}, Path("/data/s1.h5ad")]])
        assert re.fullmatch(r"scdefr/[a-z-]+:\d+\.\d+\.\d+", task.container)  # no registry host in the name
    for registry in (None, "ghcr.io/mylab"):
        config = harness.call(
            "config",
            {
                "configs": ["nextflow.config"],
                "project_dir": str(ROOT),
                "env": {},
                "params": {"container_registry": registry} if registry else {},
            },
        )["config"]
        for engine in ("docker", "podman", "singularity", "apptainer"):
            assert config[engine]["registry"] == registry, engine


def test_build_sh_builds_and_pushes_every_image_to_the_registry(tmp_path):
    """containers/build.sh REGISTRY=... PUSH=1 against a recording stand-in for the docker client."""
    log = tmp_path / "engine.log"
    engine = tmp_path / "bin" / "docker"
    engine.parent.mkdir()
    engine.write_text(f'#!/bin/sh\necho "$*" >> {log}\n[ "$1 $2" = "image inspect" ] && echo 1000000\nexit 0\n')
    engine.chmod(0o755)
    done = subprocess.run(
        [
            "bash",
            str(ROOT / "containers/build.sh"),
            f"ENGINE={engine}",
            "IMAGES=qc train",
            "REGISTRY=ghcr.io/mylab",
            "PUSH=1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    calls = log.read_text().splitlines()
    built = [re.search(r"--tag (\S+)", c).group(1) for c in calls if c.startswith("build ")]
    assert built == [f"ghcr.io/mylab/scdefr/{image}:{version}" for image in ("base", "qc", "train")]
    assert [c for c in calls if c.startswith("push ")] == [
        f"push ghcr.io/mylab/scdefr/{image}:{version}" for image in ("qc", "train")
    ]

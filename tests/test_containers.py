"""Container images: static checks of the Dockerfiles and scripts (fast, in `make test`), and the
container tier itself (`SCDEFR_TEST_CONTAINERS=1 pytest -m containers tests/test_containers.py`).

`make test-containers` (containers/test_containers.sh) is the tier; the pytest wrapper runs the same
script so its result also shows in a pytest report. It is skipped unless SCDEFR_TEST_CONTAINERS=1,
because it builds images and runs the whole module chain (minutes, root or a container engine).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
CONTAINERS = ROOT / "containers"
STEP_IMAGES = ["qc", "graph", "train", "train-cuda", "export"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def dockerfile(image: str) -> str:
    return (CONTAINERS / image / "Dockerfile").read_text()


def instructions(image: str) -> str:
    """The Dockerfile without its comments."""
    return "\n".join(line for line in dockerfile(image).splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("image", ["base", *STEP_IMAGES])
def test_dockerfile_runs_as_a_non_root_user_and_takes_its_base_as_an_argument(image):
    text = dockerfile(image)
    assert re.search(r"^ARG BASE_IMAGE=\S+\nFROM \$\{BASE_IMAGE\}$", text, re.M), (
        "base image must be an ARG with a default"
    )
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] == "1000:1000", f"last USER must be the non-root uid 1000, got {users}"
    assert "COPY" not in text.replace("COPY pkg/bin/", ""), "only the step script is copied; the rest is bind-mounted"
    assert "# syntax=" not in text, "a syntax directive would pull a frontend image from a registry"


@pytest.mark.parametrize("image", STEP_IMAGES)
def test_step_image_has_labels_its_script_and_the_package_last(image):
    text = dockerfile(image)
    for label in ("title", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    step = image.removesuffix("-cuda")
    assert (
        f"COPY pkg/bin/scdefr_bin.py pkg/bin/scdefr_{step}.py /usr/local/bin/" in text
    )  # the script and what it imports
    if "torch" in instructions(image):
        assert instructions(image).index("--no-deps /tmp/pkg") > instructions(image).index("import torch"), (
            "package after torch"
        )


@pytest.mark.parametrize("image", ["base", "qc", "graph", "export"])
def test_torch_only_in_the_train_images(image):
    assert "torch" not in instructions(image)


def test_base_images_default_to_real_public_images():
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", dockerfile("base"), re.M)
    build = (CONTAINERS / "build.sh").read_text()
    assert re.search(r"CUDA_BASE_IMAGE:-pytorch/pytorch:\d+\.\d+\.\d+-cuda[\d.]+-cudnn\d+-runtime\}", build)
    assert "https://download.pytorch.org/whl/cpu" in dockerfile("train")


def test_proxy_ca_is_a_build_secret_never_a_layer():
    for image in ["base", *STEP_IMAGES]:
        text = dockerfile(image)
        for run in re.findall(r"^RUN .*?(?<!\\)$", text, re.M | re.S):
            if "pip install" in run:
                assert "--mount=type=secret,id=ca" in run, f"{image}: a pip RUN without the CA secret"
        assert "ca-certificates.crt" not in text and "PIP_CERT=/run/secrets/ca" in text


def test_scripts_parse_and_build_help_lists_every_option():
    for script in ["build.sh", "test_containers.sh", "make_local_base.sh"]:
        subprocess.run(["bash", "-n", str(CONTAINERS / script)], check=True)
    help_text = subprocess.run(
        ["bash", str(CONTAINERS / "build.sh"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in [
        "IMAGES",
        "REGISTRY",
        "ORG",
        "ENGINE",
        "CPU_BASE_IMAGE",
        "CUDA_BASE_IMAGE",
        "TORCH_WHEEL",
        "CA_BUNDLE",
        "PUSH",
    ]:
        assert re.search(rf"^\s+{option}\b", help_text, re.M), option


def test_build_rejects_unknown_arguments():
    done = subprocess.run(["bash", str(CONTAINERS / "build.sh"), "qc"], capture_output=True, text=True)
    assert done.returncode == 2 and "expected NAME=VALUE" in done.stderr


@pytest.mark.parametrize("allow", ["0", "1"])
def test_tier_without_an_engine_fails_loudly_or_reports_skipped(allow):
    environment = {**os.environ, "ENGINE": "/nonexistent/docker", "SCDEFR_ALLOW_NO_ENGINE": allow}
    done = subprocess.run(
        ["bash", str(CONTAINERS / "test_containers.sh")], env=environment, capture_output=True, text=True
    )
    if allow == "1":
        assert done.returncode == 0 and "SKIPPED: no container engine: ENGINE=/nonexistent/docker" in done.stdout
    else:
        assert done.returncode == 1 and "FAILED: no container engine" in done.stderr
        assert "PASSED" not in done.stdout


@pytest.mark.containers
@pytest.mark.skipif(
    os.environ.get("SCDEFR_TEST_CONTAINERS") != "1",
    reason="container tier: set SCDEFR_TEST_CONTAINERS=1 or run `make test-containers`",
)
def test_module_chain_runs_in_the_step_images(tmp_path):
    environment = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(CONTAINERS / "test_containers.sh")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    skipped = [line for line in done.stdout.splitlines() if "SKIPPED" in line]
    if skipped:  # only with SCDEFR_ALLOW_NO_ENGINE=1; the script fails otherwise
        pytest.skip(skipped[0])
    assert "results check out" in output and "PASSED" in output, output[-6000:]
    assert f"scdefr/train:{VERSION}" in output

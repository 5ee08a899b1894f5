"""The pipeline as Nextflow's own front end and nf-core/tools see it.

* nflint (../shared/tools/nflint: Nextflow 26's parser, name resolution and type checks, as
  `nextflow lint`) over every .nf and .config: no errors, and no paranoid warning but the process
  `when:` deprecation (nf-core modules keep `when:` until nf-core drops it).
* `nf-core pipelines lint`, `nf-core modules lint --local` and `nf-core subworkflows lint --local`
  (nf-core/tools 4.2.1, installed by `make nf-tools`) offline: a stand-in `nextflow`
  (tests/nextflow/nextflow) answers `nextflow config`, and a local git repository holding the
  schemas of nf-core/modules (from ../shared/nf-core-schemas) stands in for its clone. No failure;
  the checks left out or accepted as warnings are listed, each with its reason, in .nf-core.yml.
Each nf-core command runs on a copy of the pipeline: they may rewrite files (sorting, modules.json).
"""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from nextflow import harness

ROOT = harness.ROOT
NFLINT = harness.SHARED / "tools" / "nflint" / "nflint"
SCHEMAS = harness.SHARED / "nf-core-schemas"
NF_CORE = (
    Path(os.environ.get("SCDEFR_NF_CORE") or Path.home() / ".cache" / "scdefr" / "nf-core-4.2.1") / "bin" / "nf-core"
)
NF_FILES = sorted(
    str(p.relative_to(ROOT)) for p in ROOT.rglob("*.nf") if ".tools" not in p.parts and ".git" not in p.parts
)
CONFIG_FILES = sorted(
    str(p.relative_to(ROOT))
    for p in [*ROOT.glob("*.config"), *ROOT.glob("conf/*.config"), ROOT / "tests/nextflow.config"]
    if p.name != "nf-test.config"
)
# nf-core/modules' schema for subworkflow meta.yml: the types an input or output may declare
SUBWORKFLOW_IO_TYPES = {"string", "number", "boolean", "array", "object"}

needs_nflint = pytest.mark.skipif(
    not NFLINT.exists() or shutil.which("java") is None,
    reason=f"nflint needs {NFLINT} (../shared/tools/nflint) and java",
)
needs_nf_core = pytest.mark.skipif(
    not NF_CORE.exists() or harness.available() is not None or not (SCHEMAS / "meta-schema.json").exists(),
    reason=f"nf-core lint needs {NF_CORE} (make nf-tools), the Groovy harness and {SCHEMAS}",
)


def _nflint(paranoid: bool) -> tuple[int, list[str], str]:
    environment = {**os.environ, "NFLINT_PARANOID": "1" if paranoid else "0", "NFLINT_VERBOSE": "1"}
    done = subprocess.run(
        [str(NFLINT), ".", *NF_FILES, *CONFIG_FILES], cwd=ROOT, capture_output=True, text=True, env=environment
    )
    findings = [line for line in done.stdout.splitlines() if re.match(r"^\S+:\d+:\d+: (error|warning)", line)]
    return done.returncode, findings, done.stdout + done.stderr


@needs_nflint
def test_nflint_finds_no_error_in_any_nextflow_or_config_file():
    assert {"main.nf", "workflows/scdefr.nf", "subworkflows/local/scdefr/main.nf"} <= set(NF_FILES)
    assert {"nextflow.config", "conf/base.config", "conf/modules.config", "tests/nextflow.config"} <= set(CONFIG_FILES)
    status, findings, output = _nflint(paranoid=False)
    assert status == 0 and findings == [], output
    assert f"{len(NF_FILES) + len(CONFIG_FILES)} file(s) checked" in output, output


@needs_nflint
def test_nflint_paranoid_warns_only_of_the_process_when_section():
    _, findings, output = _nflint(paranoid=True)
    others = [f for f in findings if "Process `when` section will not be supported" not in f]
    assert others == [], output
    assert {f.split(":")[0] for f in findings} == {f for f in NF_FILES if f.startswith("modules/")}


@needs_nflint
def test_nflint_catches_what_the_issue_found(tmp_path):
    """The checks have teeth: params outside the entry workflow warn, a bad call is an error."""
    (tmp_path / "main.nf").write_text(
        "workflow W {\n    main:\n    println params.x\n}\n\nworkflow {\n    main:\n    W(1)\n}\n"
    )
    (tmp_path / "nextflow.config").write_text("params { x = 1 }\n")
    done = subprocess.run(
        [str(NFLINT), str(tmp_path)], capture_output=True, text=True, env={**os.environ, "NFLINT_PARANOID": "1"}
    )
    assert "The use of `params` outside the entry workflow" in done.stdout
    assert done.returncode == 1 and "error" in done.stdout


GIT = ["git", "-c", "user.email=lint@localhost", "-c", "user.name=lint", "-c", "init.defaultBranch=master"]


def _copy_of_the_pipeline(target: Path) -> Path:
    """The files git would commit (tracked and new), without the installed tools, as a git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    )
    for name in listed.stdout.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "pipeline"]):
        subprocess.run([*GIT, "-C", str(target), *command], check=True)
    return target


def _offline_nf_core(home: Path) -> dict:
    """HOME with a clone of a local stand-in for github.com/nf-core/modules (its schemas only)."""
    source = home / "nf-core-modules-source"
    (source / "modules" / "nf-core").mkdir(parents=True)
    (source / "subworkflows" / "nf-core").mkdir(parents=True)
    for schema in ("meta-schema.json", "environment-schema.json"):
        shutil.copy(SCHEMAS / schema, source / "modules" / schema)
    if (SCHEMAS / "subworkflow-schema.json").exists():
        shutil.copy(SCHEMAS / "subworkflow-schema.json", source / "subworkflows" / "yaml-schema.json")
    (source / ".nf-core.yml").write_text("repository_type: modules\norg_path: nf-core\n")
    for keep in ("modules/nf-core/.keep", "subworkflows/nf-core/.keep"):
        (source / keep).touch()
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "schemas"]):
        subprocess.run([*GIT, "-C", str(source), *command], check=True)
    subprocess.run([*GIT, "clone", "-q", str(source), str(home / ".config/nfcore/nf-core/modules")], check=True)
    return {
        **os.environ,
        "HOME": str(home),
        "NXF_OFFLINE": "true",
        "COLUMNS": "400",
        "HIDE_PROGRESS": "1",
        "PATH": f"{ROOT / 'tests' / 'nextflow'}{os.pathsep}{os.environ['PATH']}",
    }


def _nf_core(arguments: list[str], pipeline: Path, environment: dict) -> str:
    done = subprocess.run(
        [str(NF_CORE), *arguments, "--dir", str(pipeline), "--plain-text"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def _summary(output: str, kind: str) -> int:
    return int(re.search(rf"\[.\]\s+(\d+) Tests? {kind}", output).group(1))


def _unchanged(copy: Path) -> list[str]:
    return [
        str(p.relative_to(copy))
        for p in copy.rglob("*")
        if p.is_file()
        and ".git" not in p.relative_to(copy).parts
        and (
            not (ROOT / p.relative_to(copy)).is_file() or not filecmp.cmp(p, ROOT / p.relative_to(copy), shallow=False)
        )
    ]


@pytest.fixture(scope="module")
def lint_setup(tmp_path_factory):
    home = tmp_path_factory.mktemp("nf_core_home")
    return _copy_of_the_pipeline(tmp_path_factory.mktemp("pipeline")), _offline_nf_core(home)


def _settings() -> dict:
    return yaml.safe_load((ROOT / ".nf-core.yml").read_text())


@needs_nf_core
def test_nf_core_pipelines_lint_reports_no_failure(lint_setup, tmp_path):
    pipeline, environment = lint_setup
    results = tmp_path / "lint.json"
    output = _nf_core(["pipelines", "lint", "--json", str(results)], pipeline, environment)
    found = yaml.safe_load(results.read_text())
    assert found["tests_failed"] == [], output[-6000:]
    passed = found["num_tests_pass"] if "num_tests_pass" in found else len(found["tests_pass"])
    assert passed >= 100  # the lint ran its checks: about 120 pass here
    # every check left out in .nf-core.yml is one nf-core/tools knows, and each says why (a comment above it)
    lint = _settings()["lint"]
    text = (ROOT / ".nf-core.yml").read_text()
    for name in lint:
        assert re.search(rf"#.*\n(  #.*\n)*  {name}:", text), f".nf-core.yml: no reason given for {name}"
    assert "manifest.name" not in output  # the org/ prefix it crashed on


@needs_nf_core
def test_nf_core_modules_lint_finds_only_the_listed_offline_and_design_warnings(lint_setup):
    pipeline, environment = lint_setup
    output = _nf_core(["modules", "lint", "--local", "--all"], pipeline, environment)
    assert _summary(output, "Failed") == 0, output[-6000:]
    modules = {str(p.parent.relative_to(ROOT / "modules/local")) for p in ROOT.glob("modules/local/**/main.nf")}
    warned = {m.group(2) for m in re.finditer(r"^(\S+) (\w+)\s*$", output, re.M) if m.group(1) in modules}
    assert warned == set(_settings()["local_components_lint_warnings"]), output[-6000:]
    assert _summary(output, "Warning") >= len(warned)
    assert _unchanged(pipeline) == [], "nf-core rewrote files (environment.yml order, meta.yml)"


@needs_nf_core
def test_nf_core_subworkflows_lint_reports_nothing(lint_setup):
    if not (SCHEMAS / "subworkflow-schema.json").exists():
        pytest.skip(f"nf-core/modules' subworkflows/yaml-schema.json is not in {SCHEMAS} (as subworkflow-schema.json)")
    pipeline, environment = lint_setup
    output = _nf_core(["subworkflows", "lint", "--local", "--all"], pipeline, environment)
    assert _summary(output, "Failed") == 0 and _summary(output, "Warning") == 0, output[-6000:]


def test_subworkflow_meta_yml_declares_only_the_types_nf_core_allows():
    """nf-core's subworkflow schema: an input/output is one of SUBWORKFLOW_IO_TYPES or a structure."""
    meta = yaml.safe_load((ROOT / "subworkflows/local/scdefr/meta.yml").read_text())
    for section in ("input", "output"):
        for item in meta[section]:
            ((name, spec),) = item.items()
            assert "description" in spec and ("structure" in spec or spec.get("type") in SUBWORKFLOW_IO_TYPES), name
            for element in spec.get("structure", []):
                ((_, inner),) = element.items()
                assert {"type", "description"} <= set(inner), name
    assert len(meta["keywords"]) >= 3 and meta["components"]

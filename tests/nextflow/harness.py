"""Runs tests/nextflow/NfHarness.groovy on the Groovy 4 runtime that npm-groovy-lint ships.

`make nf-tools` installs npm-groovy-lint into tests/nextflow/.tools; the harness is compiled there
on first use, into classes-<hash of NfHarness.groovy>/. One JVM (`NfHarness serve`) then answers
every request of the Python process: call("parse"|"inspect", [paths]), call("render", [requests]),
call("match"|"call"|"config"|"setting", request); render.py wraps render/match for running a task.
``available()`` says whether java and
the Groovy jars are present, so tests can skip with a reason instead of failing on a bare machine.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The team's shared folder beside the checkout (nflint, the nf-core schemas); SCDEFR_SHARED elsewhere
SHARED = Path(os.environ.get("SCDEFR_SHARED") or ROOT.parent / "shared")
HERE = Path(__file__).resolve().parent
TOOLS = HERE / ".tools"
GROOVY_LIB = TOOLS / "node_modules" / "npm-groovy-lint" / "lib" / "java" / "groovy" / "lib"
SOURCE = HERE / "NfHarness.groovy"
# Short-lived JVMs: skip the optimising compiler, it only costs start-up time here.
JAVA_OPTIONS = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss4m"]


class HarnessError(RuntimeError):
    """The harness refused a file or a request (syntax error, unknown name, missing section...)."""


def available() -> str | None:
    """None when the harness can run, else the reason it cannot (for pytest.skip)."""
    if shutil.which("java") is None:
        return "java is not installed"
    if not (GROOVY_LIB / "groovy-4.0.26.jar").exists() and not list(GROOVY_LIB.glob("groovy-4*.jar")):
        return f"Groovy 4 jars missing under {GROOVY_LIB}: run `make nf-tools`"
    return None


def _classpath(*extra: Path) -> str:
    return os.pathsep.join([*(str(p) for p in extra), str(GROOVY_LIB / "*")])


def _compiled() -> Path:
    """NfHarness compiled once per version of its source (concurrent sessions may race: the first rename wins)."""
    digest = hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]
    classes = TOOLS / f"classes-{digest}"
    if not (classes / "NfHarness.class").exists():
        staging = Path(tempfile.mkdtemp(prefix="classes-", dir=TOOLS))
        done = subprocess.run(
            [
                "java",
                *JAVA_OPTIONS,
                "-cp",
                _classpath(),
                "org.codehaus.groovy.tools.FileSystemCompiler",
                "-d",
                str(staging),
                str(SOURCE),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise HarnessError(f"cannot compile {SOURCE.name}: {done.stderr.strip()[-2000:]}")
        try:
            staging.rename(classes)
        except OSError:  # another session compiled the same source first
            shutil.rmtree(staging, ignore_errors=True)
    return classes


class _Server:
    """One `NfHarness serve` JVM per Python process: JVM start-up costs seconds, a request milliseconds."""

    process: subprocess.Popen | None = None
    lock = threading.Lock()

    @classmethod
    def ask(cls, command: str, request) -> object:
        with cls.lock:
            if cls.process is None or cls.process.poll() is not None:
                cls.process = subprocess.Popen(
                    ["java", *JAVA_OPTIONS, "-cp", _classpath(_compiled()), "NfHarness", "serve"],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    bufsize=1,
                )
                atexit.register(cls.process.kill)
            cls.process.stdin.write(json.dumps({"command": command, "request": request}, default=_encode) + "\n")
            cls.process.stdin.flush()
            line = cls.process.stdout.readline()
        if not line:
            raise HarnessError(f"the harness JVM stopped (exit status {cls.process.poll()})")
        answer = json.loads(line)
        if "error" in answer:
            raise HarnessError(answer["error"])
        return answer["result"]


def call(command: str, request) -> object:
    """Runs one harness command (parse/inspect: a list of paths; render: a list of requests;
    match: a request) relative to the repository root; HarnessError when the harness refuses."""
    reason = available()
    if reason:
        raise HarnessError(reason)
    return _Server.ask(command, request)


def _encode(value):
    if isinstance(value, Path):
        return {"__path__": str(value.resolve())}
    if isinstance(value, Decimal):  # what Groovy keeps as BigDecimal (nf-schema's 2.50, 1E+3)
        return {"__decimal__": str(value)}
    raise TypeError(f"cannot send {type(value).__name__} to the harness")


def call_function(path: Path | str, function: str, *args) -> dict:
    """Calls a top-level function of a .nf file (its own Groovy source) with ``args``: {"result": value}, or
    {"error": message} when it stops the run with ``error(...)``. Functions that need Nextflow's runtime
    (file(), channels, plugins) cannot be called here: keep the logic worth testing in pure functions."""
    return call("call", {"file": str(path), "function": function, "args": list(args)})


def parse(*files: Path | str) -> dict[str, list[dict]]:
    """Syntax errors per file (empty list: the file parses)."""
    return {report["file"]: report["errors"] for report in call("parse", [str(f) for f in files])}


def inspect(*files: Path | str) -> dict[str, dict]:
    """Structure of each .nf / .config file (see NfHarness.groovy)."""
    return call("inspect", [str(f) for f in files])

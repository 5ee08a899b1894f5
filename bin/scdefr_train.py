#!/usr/bin/env python3
"""Pipeline step 'train' as the Nextflow module calls it: 'scdefr train', plus what a retried task needs.

--checkpoint-dir DIR keeps the run's checkpoint in DIR instead of the task's own folder, so that a
later attempt of the task (a new work folder) finds it and resumes with --resume. Its name holds a
digest of the input's bytes and of every option that shapes the training, so a run never resumes
another one; on success the checkpoint is copied to --model-out. DIR is a path every attempt can
reach; a bucket (s3://, gs://, az://) is read through its Fusion mount at /fusion.

Running out of memory, on the GPU too, ends with one line and the package's exit status 3, which
conf/base.config retries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from scdefr_bin import import_scdefr, run

# Options that do not change the result of a resumed run (scdefr train --help, --resume)
RUNTIME_OPTIONS = {
    "input",
    "output",
    "model_out",
    "resume",
    "checkpoint_every",
    "device",
    "amp",
    "log_every",
    "threads",
    "quiet",
    "compression",
    "command",
    "handler",
}


def fail(message: str) -> int:
    print(f"scdefr_train.py: error: {message}", file=sys.stderr)
    return 2


def option_value(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``name VALUE`` (or ``name=VALUE``) and argv without it."""
    rest, value, words = [], None, iter(argv)
    for word in words:
        if word == name:
            value = next(words, None)
            if value is None:
                raise ValueError(f"{name} needs a value")
        elif word.startswith(f"{name}="):
            value = word.split("=", 1)[1]
        else:
            rest.append(word)
    return value, rest


def local_folder(directory: str) -> Path:
    """A bucket URI as its Fusion mount; any other value as a path."""
    scheme, _, rest = directory.partition("://")
    if not rest:
        return Path(directory)
    if scheme in ("s3", "gs", "az") and Path("/fusion").is_dir():
        return Path("/fusion") / scheme / rest
    raise ValueError(
        f"--checkpoint-dir {directory}: a bucket needs Fusion (fusion.enabled = true), or give a shared filesystem path"
    )


def checkpoint_name(argv: list[str]) -> tuple[str, Path]:
    """``<model-out stem>.<digest>.pt`` for this input and these options, and the --model-out path."""
    import_scdefr()
    from scdefr.cli import build_parser

    args = build_parser().parse_args(["train", *argv])
    if not args.model_out:
        raise ValueError("--checkpoint-dir needs --model-out")
    settings = {key: value for key, value in vars(args).items() if key not in RUNTIME_OPTIONS}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    with open(args.input, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    model_out = Path(args.model_out)
    return f"{model_out.name.removesuffix('.pt')}.{digest.hexdigest()[:16]}.pt", model_out


def prepare_checkpoint(directory: str, argv: list[str]) -> tuple[list[str], Path, Path]:
    """argv writing the checkpoint into ``directory`` (resuming the one there), the checkpoint, --model-out."""
    folder = local_folder(directory)
    name, model_out = checkpoint_name(argv)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / name
    _, argv = option_value(argv, "--model-out")
    argv = [*argv, "--model-out", str(checkpoint)]
    if checkpoint.exists():
        print(f"scdefr_train.py: resuming from {checkpoint}", file=sys.stderr)
        argv += ["--resume", str(checkpoint)]
    return argv, checkpoint, model_out


def train(argv: list[str]) -> int:
    try:
        directory, argv = option_value(argv, "--checkpoint-dir")
        if directory is not None:
            argv, checkpoint, model_out = prepare_checkpoint(directory, argv)
    except (ValueError, OSError) as error:
        return fail(str(error))
    status = run("train", argv)
    if status == 0 and directory is not None:
        partial = model_out.with_name(f".{model_out.name}.partial")
        shutil.copyfile(checkpoint, partial)
        os.replace(partial, model_out)
    return status


if __name__ == "__main__":
    sys.exit(train(sys.argv[1:]))

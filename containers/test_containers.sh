#!/usr/bin/env bash
# The container test tier (`make test-containers`): builds the CPU step images and runs each Nextflow
# module's script block inside its own image, chained qc -> graph -> train -> export on simulated data.
#
# Engine: $ENGINE if set (docker or podman, or a path), else a Docker daemon that answers, else one
# this script starts itself (installing docker.io with apt when it is root and docker is missing; the
# daemon gets its own socket and data root under $SCDEFR_ENGINE_ROOT and is stopped at the end).
# Base image: $CPU_BASE_IMAGE if set, else python:3.11-slim-bookworm if the engine can pull it, else a
# local Debian bookworm image made with debootstrap (containers/make_local_base.sh).
# With no engine the tier fails and says why; SCDEFR_ALLOW_NO_ENGINE=1 turns that into SKIPPED.
#
# Also read: REGISTRY/ORG (image names, as build.sh), CA_BUNDLE (proxy CA, default: the system bundle
# when pip is set to use it), TORCH_WHEEL (default: a local torch CPU wheel from pip's find-links),
# SCDEFR_KEEP_ENGINE=1 (leave a daemon this script started running), PYTHON (default: .venv/bin/python).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
PYTHON=${PYTHON:-$repo/.venv/bin/python}
SCDEFR_ENGINE_ROOT=${SCDEFR_ENGINE_ROOT:-/var/tmp/scdefr-engine}
tier_started=$SECONDS
say() { echo "test_containers: $*"; }
elapsed() { echo "$((SECONDS - tier_started)) s"; }

no_engine() {
    if [ "${SCDEFR_ALLOW_NO_ENGINE:-0}" = 1 ]; then
        say "SKIPPED: no container engine: $*"
        exit 0
    fi
    say "FAILED: no container engine: $*" >&2
    say "(install docker.io or podman and run as root or a docker-group user; SCDEFR_ALLOW_NO_ENGINE=1 reports SKIPPED instead)" >&2
    exit 1
}

# ------------------------------------------------------------------ engine
started_daemon_pid=
stop_engine() {
    if [ -n "$started_daemon_pid" ] && [ "${SCDEFR_KEEP_ENGINE:-0}" != 1 ]; then
        kill "$started_daemon_pid" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$started_daemon_pid" 2>/dev/null || break; sleep 1; done
    fi
}
trap stop_engine EXIT

engine_answers() { "$1" info >/dev/null 2>&1; }

start_dockerd() {
    # Debian's docker.io gives the real client as /usr/bin/docker (a `docker` earlier on PATH may be another tool).
    if [ ! -x /usr/sbin/dockerd ] || [ ! -x /usr/bin/docker ]; then
        [ "$(id -u)" = 0 ] || no_engine "docker.io is not installed and installing it needs root"
        command -v apt-get >/dev/null || no_engine "docker.io is not installed and there is no apt-get"
        say "installing docker.io (apt)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } >"${TMPDIR:-/tmp}/scdefr-apt.log" 2>&1 \
            || no_engine "apt-get install docker.io failed (log: ${TMPDIR:-/tmp}/scdefr-apt.log)"
    fi
    [ "$(id -u)" = 0 ] || no_engine "no Docker daemon answers and starting one needs root"
    mkdir -p "$SCDEFR_ENGINE_ROOT"
    export DOCKER_HOST=unix://$SCDEFR_ENGINE_ROOT/docker.sock
    if engine_answers /usr/bin/docker; then ENGINE=/usr/bin/docker; return; fi   # left running by an earlier run
    say "starting dockerd (data root $SCDEFR_ENGINE_ROOT/data, log $SCDEFR_ENGINE_ROOT/dockerd.log)"
    # No bridge or iptables: builds and the tier's containers use the host network or none at all.
    /usr/sbin/dockerd --iptables=false --ip-masq=false --bridge=none --storage-driver=overlay2 \
        --data-root "$SCDEFR_ENGINE_ROOT/data" --exec-root "$SCDEFR_ENGINE_ROOT/exec" \
        --pidfile "$SCDEFR_ENGINE_ROOT/dockerd.pid" --host "$DOCKER_HOST" >"$SCDEFR_ENGINE_ROOT/dockerd.log" 2>&1 &
    started_daemon_pid=$!
    for _ in $(seq 60); do
        engine_answers /usr/bin/docker && { ENGINE=/usr/bin/docker; return; }
        kill -0 "$started_daemon_pid" 2>/dev/null || break
        sleep 1
    done
    tail -5 "$SCDEFR_ENGINE_ROOT/dockerd.log" >&2 || true
    no_engine "dockerd did not start (log: $SCDEFR_ENGINE_ROOT/dockerd.log)"
}

if [ -n "${ENGINE:-}" ]; then
    engine_answers "$ENGINE" || no_engine "ENGINE=$ENGINE does not answer '$ENGINE info'"
elif [ -x /usr/bin/docker ] && engine_answers /usr/bin/docker; then
    ENGINE=/usr/bin/docker
elif command -v podman >/dev/null && engine_answers podman; then
    ENGINE=podman
else
    start_dockerd
fi
say "engine: $ENGINE ($("$ENGINE" version --format '{{.Server.Version}}' 2>/dev/null || "$ENGINE" --version))"
export ENGINE

# ------------------------------------------------------------------ renderer
# The script blocks are rendered by tests/nextflow/harness.py (java + the Groovy jars of `make nf-tools`).
harness_missing() { (cd "$repo/tests/nextflow" && "$PYTHON" -c 'import harness, sys; r = harness.available(); print(r or ""); sys.exit(bool(r))'); }
if ! reason=$(harness_missing); then
    if ! command -v java >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing java (apt) for the Nextflow harness"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless; } >"${TMPDIR:-/tmp}/scdefr-apt.log" 2>&1 || true
    fi
    if grep -q '^nf-tools:' "$repo/Makefile"; then make -C "$repo" nf-tools; fi
    reason=$(harness_missing) || { say "FAILED: cannot render the modules' script blocks: $reason" >&2; exit 1; }
fi
[ -z "${ORG:-}" ] || [ "$ORG" = scdefr ] || { say "FAILED: the modules name scdefr/<step> images; ORG=$ORG cannot be tested" >&2; exit 1; }

# ------------------------------------------------------------------ base image
if [ -z "${CPU_BASE_IMAGE:-}" ]; then
    if "$ENGINE" image inspect python:3.11-slim-bookworm >/dev/null 2>&1 \
        || timeout 120 "$ENGINE" pull -q python:3.11-slim-bookworm >/dev/null 2>&1; then
        CPU_BASE_IMAGE=python:3.11-slim-bookworm
    else
        say "python:3.11-slim-bookworm cannot be pulled: making a local bookworm base with debootstrap"
        if ! command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ]; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >"${TMPDIR:-/tmp}/scdefr-apt.log" 2>&1 \
                || { say "FAILED: apt-get install debootstrap (log: ${TMPDIR:-/tmp}/scdefr-apt.log)" >&2; exit 1; }
        fi
        CPU_BASE_IMAGE=scdefr-local/python:3.11-bookworm
        SCDEFR_BASE_ROOTFS=${SCDEFR_BASE_ROOTFS:-$SCDEFR_ENGINE_ROOT/rootfs} bash "$here/make_local_base.sh" "$CPU_BASE_IMAGE"
    fi
fi
say "CPU base image: $CPU_BASE_IMAGE ($(elapsed))"

# ------------------------------------------------------------------ build
# pip's own settings on this machine (files and PIP_* variables) say where a proxy CA and a local torch wheel are.
pip_setting() { "$PYTHON" -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'$/\1/p"; }
CA_BUNDLE=${CA_BUNDLE:-$(pip_setting cert | head -n 1)}
CA_BUNDLE=${CA_BUNDLE:-${REQUESTS_CA_BUNDLE:-}}
if [ -z "${TORCH_WHEEL:-}" ]; then
    torch_version=$(sed -n 's/^TORCH_VERSION=\${TORCH_VERSION:-\(.*\)}$/\1/p' "$here/build.sh")
    for dir in $(pip_setting find-links); do
        for wheel in "${dir#file://}"/torch-"${TORCH_VERSION:-$torch_version}"+cpu-*.whl; do
            if [ -f "$wheel" ]; then TORCH_WHEEL=$wheel; break 2; fi
        done
    done
fi
say "proxy CA: ${CA_BUNDLE:-none}; torch wheel: ${TORCH_WHEEL:-none, PyTorch CPU index}"

build_started=$SECONDS
bash "$here/build.sh" IMAGES="qc graph train export" NETWORK=host CPU_BASE_IMAGE="$CPU_BASE_IMAGE" \
    ${CA_BUNDLE:+CA_BUNDLE="$CA_BUNDLE"} ${TORCH_WHEEL:+TORCH_WHEEL="$TORCH_WHEEL"}
say "images built in $((SECONDS - build_started)) s"

# ------------------------------------------------------------------ run the modules
prefix=${REGISTRY:+${REGISTRY%/}/}
work=$(mktemp -d "${TMPDIR:-/tmp}/scdefr-tier.XXXXXX")
chmod 0755 "$work"
run_started=$SECONDS
"$PYTHON" "$here/run_modules.py" --engine "$ENGINE" --work "$work/work" ${prefix:+--registry "${prefix%/}"} \
    || { say "FAILED: the module chain (task folders kept in $work/work)" >&2; exit 1; }
say "module chain ran in $((SECONDS - run_started)) s"

version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")
say "image sizes:"
for image in base qc graph train export; do
    bytes=$("$ENGINE" image inspect --format '{{.Size}}' "${prefix}scdefr/$image:$version")
    printf '  %-36s %6s MB\n' "${prefix}scdefr/$image:$version" "$((bytes / 1000000))"
done
rm -rf "$work"   # kept when something failed, for a look at the task folders
say "PASSED in $(elapsed)"

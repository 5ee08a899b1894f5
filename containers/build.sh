#!/usr/bin/env bash
# Build (and optionally push) the scDEFR step images: <REGISTRY>/<ORG>/<image>:<version>, e.g. scdefr/qc:0.2.0.
#
# usage: containers/build.sh [NAME=VALUE ...]      (the same names are read from the environment)
#   IMAGES          images to build, in order                 (default: "qc graph train export"; add train-cuda)
#   REGISTRY        registry host (and path) put before ORG    (default: none, e.g. ghcr.io or quay.io/lab)
#   ORG             organisation / namespace                  (default: scdefr)
#   VERSION         image tag                                 (default: the package version in pyproject.toml)
#   ENGINE          docker or podman, or a path to either     (default: docker, or /usr/bin/docker, if its daemon answers, else podman)
#   CPU_BASE_IMAGE  base of the CPU images, needs python3 + venv   (default: python:3.11-slim-bookworm)
#   CUDA_BASE_IMAGE base of train-cuda: a PyTorch CUDA runtime image (default: pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime)
#   TORCH_VERSION   torch of the train images                 (default: 2.13.0)
#   TORCH_INDEX_URL where the CPU torch comes from            (default: https://download.pytorch.org/whl/cpu)
#   TORCH_WHEEL     a local torch-<TORCH_VERSION>+cpu wheel used instead of TORCH_INDEX_URL
#   PIP_INDEX_URL   Python package index                      (default: https://pypi.org/simple)
#   CA_BUNDLE       CA file of a TLS-intercepting proxy; passed as the build secret `ca`, never stored in an image
#   NETWORK         build network, e.g. host                  (default: the engine's)
#   SOURCE_URL      org.opencontainers.image.source label     (default: the git remote `origin`, if any)
#   PUSH=1          push every image after building it
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
for assignment in "$@"; do
    case $assignment in
        *=*) export "${assignment%%=*}=${assignment#*=}" ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: error: expected NAME=VALUE, got '$assignment' (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build.sh: error: $*" >&2; exit 1; }

IMAGES=${IMAGES:-qc graph train export}
ORG=${ORG:-scdefr}
CPU_BASE_IMAGE=${CPU_BASE_IMAGE:-python:3.11-slim-bookworm}
CUDA_BASE_IMAGE=${CUDA_BASE_IMAGE:-pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
PIP_INDEX_URL=${PIP_INDEX_URL:-https://pypi.org/simple}
SOURCE_URL=${SOURCE_URL:-$(git -C "$repo" remote get-url origin 2>/dev/null || true)}
command -v python3 >/dev/null || die "python3 (3.11+) is needed to read pyproject.toml"
VERSION=${VERSION:-$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$repo/pyproject.toml")}

# A docker client that reaches a daemon and can use BuildKit: its own (before 23.0) or the buildx plugin.
buildkit_docker() {
    command -v "$1" >/dev/null && "$1" info >/dev/null 2>&1 || return 1
    "$1" buildx version >/dev/null 2>&1 && return 0
    local major; major=$("$1" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
    [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null
}
if [ -z "${ENGINE:-}" ]; then
    if buildkit_docker docker; then ENGINE=docker
    elif buildkit_docker /usr/bin/docker; then ENGINE=/usr/bin/docker   # Debian's docker.io, if PATH has another docker first
    elif command -v podman >/dev/null; then ENGINE=podman
    else die "no container engine: start a Docker daemon or install podman (or set ENGINE)"; fi
fi
case $(basename "$ENGINE") in
    docker) export DOCKER_BUILDKIT=1 ;;   # build secrets and RUN --mount need BuildKit
    podman) ;;
    *) die "ENGINE must be docker or podman, got '$ENGINE'" ;;
esac

prefix=${REGISTRY:+${REGISTRY%/}/}$ORG
tag_of() { echo "$prefix/$1:$VERSION"; }

# The build context: only what the images need, so a change elsewhere in the repository rebuilds nothing.
context=$(mktemp -d "${TMPDIR:-/tmp}/scdefr-build.XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/pkg/requirements" "$context/wheels"
cp "$repo/pyproject.toml" "$context/pkg/"
for optional in README.md LICENSE; do [ -e "$repo/$optional" ] && cp "$repo/$optional" "$context/pkg/"; done
(cd "$repo" && tar --exclude=__pycache__ --exclude='*.egg-info' --exclude='*.pyc' -c src bin) | tar -C "$context/pkg" -x
chmod 0755 "$context"/pkg/bin/scdefr_{qc,graph,train,export}.py
cp "$repo/requirements/constraints.txt" "$context/pkg/requirements/"
# The runtime dependencies are pyproject's, less torch: the train images add their own torch build.
python3 - "$repo/pyproject.toml" >"$context/pkg/requirements/runtime.txt" <<'PY'
import re, sys, tomllib
for requirement in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]:
    if re.match(r"torch\b", requirement) is None:
        print(requirement)
PY
if [ -n "${TORCH_WHEEL:-}" ]; then
    [ -f "$TORCH_WHEEL" ] || die "TORCH_WHEEL=$TORCH_WHEEL is not a file"
    case $(basename "$TORCH_WHEEL") in "torch-$TORCH_VERSION"[+-]*.whl) ;; *) die "TORCH_WHEEL is not a torch $TORCH_VERSION wheel: $TORCH_WHEEL" ;; esac
    ln "$TORCH_WHEEL" "$context/wheels/" 2>/dev/null || cp "$TORCH_WHEEL" "$context/wheels/"
fi

build() {  # build IMAGE_TAG DOCKERFILE [--build-arg ...]
    local tag=$1 dockerfile=$2; shift 2
    local options=(--file "$dockerfile" --tag "$tag"
        --build-arg "PIP_INDEX_URL=$PIP_INDEX_URL" --build-arg "VERSION=$VERSION" --build-arg "SOURCE_URL=$SOURCE_URL")
    [ -n "${NETWORK:-}" ] && options+=(--network "$NETWORK")
    if [ -n "${CA_BUNDLE:-}" ]; then
        [ -f "$CA_BUNDLE" ] || die "CA_BUNDLE=$CA_BUNDLE is not a file"
        options+=(--secret "id=ca,src=$CA_BUNDLE")
    fi
    echo "build.sh: building $tag ($(basename "$(dirname "$dockerfile")")/Dockerfile)"
    local started=$SECONDS
    "$ENGINE" build "${options[@]}" "$@" "$context" || die "building $tag failed"
    echo "build.sh: built $tag in $((SECONDS - started)) s"
}

cpu_base_built=
for image in $IMAGES; do
    [ -f "$here/$image/Dockerfile" ] && [ "$image" != base ] || die "unknown image '$image' (one of: qc graph train train-cuda export)"
    case $image in
        train-cuda)
            build "$(tag_of base-cuda)" "$here/base/Dockerfile" \
                --build-arg "BASE_IMAGE=$CUDA_BASE_IMAGE" --build-arg "VENV_OPTIONS=--system-site-packages"
            build "$(tag_of train-cuda)" "$here/train-cuda/Dockerfile" \
                --build-arg "BASE_IMAGE=$(tag_of base-cuda)" --build-arg "TORCH_VERSION=$TORCH_VERSION" ;;
        *)
            if [ -z "$cpu_base_built" ]; then
                build "$(tag_of base)" "$here/base/Dockerfile" --build-arg "BASE_IMAGE=$CPU_BASE_IMAGE"
                cpu_base_built=1
            fi
            build "$(tag_of "$image")" "$here/$image/Dockerfile" --build-arg "BASE_IMAGE=$(tag_of base)" \
                --build-arg "TORCH_VERSION=$TORCH_VERSION" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" ;;
    esac
    if [ "${PUSH:-0}" = 1 ]; then "$ENGINE" push "$(tag_of "$image")" || die "pushing $(tag_of "$image") failed"; fi
done

echo "build.sh: images"
for image in $IMAGES; do
    printf '  %-40s %6s MB\n' "$(tag_of "$image")" \
        "$(( $("$ENGINE" image inspect --format '{{.Size}}' "$(tag_of "$image")") / 1000000 ))"
done

#!/usr/bin/env bash
# Make a local Debian bookworm + Python 3.11 base image with debootstrap and import it into the engine,
# for machines that cannot pull python:3.11-slim-bookworm from a registry. The Dockerfiles only need
# `python3` with the venv module, which this image has just like the official one.
#
# usage: containers/make_local_base.sh [TAG]        (default tag: scdefr-local/python:3.11-bookworm)
# env:   ENGINE (docker|podman, default: whichever works), DEBIAN_MIRROR, SCDEFR_BASE_ROOTFS (work folder)
set -euo pipefail

tag=${1:-scdefr-local/python:3.11-bookworm}
engine=${ENGINE:-$(command -v docker >/dev/null && echo docker || echo podman)}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=${SCDEFR_BASE_ROOTFS:-$(mktemp -d /tmp/scdefr-rootfs.XXXXXX)}

if "$engine" image inspect "$tag" >/dev/null 2>&1; then
    echo "make_local_base: $tag already present"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "make_local_base: debootstrap not installed (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "make_local_base: debootstrap needs root" >&2; exit 1; }

if [ ! -x "$rootfs/usr/bin/python3" ]; then
    echo "make_local_base: debootstrap bookworm into $rootfs (a few minutes)"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log" >&2; echo "make_local_base: debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
fi
# What an image does not need: apt's package lists and downloads, documentation, translations.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*

tar --numeric-owner -C "$rootfs" -c . | "$engine" import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag" >/dev/null
echo "make_local_base: imported $tag ($("$engine" image inspect --format '{{.Size}}' "$tag") bytes)"

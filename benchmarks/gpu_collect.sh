#!/usr/bin/env bash
# Collects the logs of benchmarks/gpu_check.sh started detached (setsid) on a lent GPU machine:
# waits until its progress log says "done" or SECONDS have passed, then copies progress.log and
# the other logs (as logs.tgz; no h5ad, checkpoints or per-cell tables) into DEST. Run it at the
# end of each call while the check runs on.
#
#   benchmarks/gpu_collect.sh OUTDIR SECONDS DEST
set -uo pipefail
if [ $# -ne 3 ]; then
    echo "usage: benchmarks/gpu_collect.sh OUTDIR SECONDS DEST" >&2
    exit 2
fi
out=$1 dest=$3
end=$((SECONDS + $2))
while [ $SECONDS -lt $end ] && ! grep -qs " done$" "$out/progress.log"; do sleep 5; done
mkdir -p "$dest"
df -h "$out" >"$out/disk.txt" 2>&1
free -g >>"$out/disk.txt" 2>&1
cp "$out/progress.log" "$dest/" 2>/dev/null
tar czf "$dest/logs.tgz" -C "$out" --exclude='*.h5ad' --exclude='*.pt' --exclude='*/export/*.csv' .
grep -s " done$" "$out/progress.log" || echo "gpu_check.sh still running after $2 s"

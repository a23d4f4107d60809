#!/bin/sh
# pgrep PATTERN: the pids of processes whose name matches PATTERN, as
# procps' pgrep (which Debian's busybox-static lacks). Exit 1 if none.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
found=1
for dir in /proc/[0-9]*; do
    read -r name < "$dir/comm" 2>/dev/null || continue
    if echo "$name" | grep -q -e "$1"; then
        echo "${dir#/proc/}"
        found=0
    fi
done
exit $found

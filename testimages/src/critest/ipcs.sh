#!/bin/sh
# ipcs -m: the System V shared memory segments of this IPC namespace, as
# util-linux's ipcs lists them (Debian's busybox-static has no ipcs).
case "$1" in
    -m|"") ;;
    *) echo "ipcs: only -m is supported" >&2; exit 2 ;;
esac
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
    printf '0x%08x %-10s %-10s %-10s %-10s %-10s\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done

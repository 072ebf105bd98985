#!/bin/sh
# Boots a Debian 12 host with systemd as PID 1 (systemd-nspawn, as the test hosts are) on a GPU machine
# that has no systemd of its own, then runs real_gpu_check.py with its probes inside that host.
#   boot_probe_host.sh ROOT_TARBALL OUT
# ROOT_TARBALL: a debootstrap --variant=minbase root with systemd, systemd-container, dbus and python3
# (tar.xz). systemd-nspawn runs from that root with the root's own libraries, so the GPU machine
# needs nothing but a kernel with cgroup v2, the NVIDIA driver and nsenter.
set -eu
tarball=$1 out=$2
root=/var/lib/ollama-probe-host
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$root" && mkdir -p "$root" && tar -C "$root" -xJf "$tarball"
# debootstrap leaves machine-id empty, and so may a bare GPU machine's image: nspawn wants both
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
[ -s /etc/machine-id ] || cp "$root/etc/machine-id" /etc/machine-id
# nspawn keeps its mount propagation folder under /run and only clears it on a tmpfs
mkdir -p /run/systemd/nspawn
mountpoint -q /run/systemd/nspawn || mount -t tmpfs tmpfs /run/systemd/nspawn
# the driver's user-space libraries, found through the host's ld.so.cache as on a real server
binds=
libcuda=$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')
if [ -n "$libcuda" ]; then
    driver_libs=$(dirname "$libcuda")
    echo "$driver_libs" >"$root/etc/ld.so.conf.d/nvidia.conf"
    mkdir -p "$root$driver_libs"
    binds="--bind-ro=$driver_libs"
fi
for node in /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia[0-9]*; do
    [ -e "$node" ] && binds="$binds --bind=$node"
done
# The root's own loader and libraries (its lib64/ld-linux link is absolute: it would pick this machine's).
# shellcheck disable=SC2086  # binds is a word list
setsid "$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --library-path "$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu/systemd" \
    "$root/usr/bin/systemd-nspawn" --boot --register=no --keep-unit --machine=probe-host \
    --directory="$root" --console=passive --link-journal=no --system-call-filter=bpf $binds \
    </dev/null >"$out/console.log" 2>&1 &
nspawn_pid=$!
# the container's PID 1: systemd-nspawn's child
leader=
for _ in $(seq 150); do
    leader=$(pgrep -x -P "$nspawn_pid" systemd || true)
    [ -n "$leader" ] && break
    sleep 0.2
done
if [ -z "$leader" ]; then
    echo "the probe host did not boot"
    cat "$out/console.log"
    ps -eo pid,ppid,stat,wchan:20,args --forest | grep -v '\[' | tail -15
    exit 1
fi
enter() { nsenter --target "$leader" --all "$@"; }
enter systemctl is-system-running --wait || true
enter ldconfig
OLLAMA_PROBE_ENTER="nsenter --target $leader --all" OLLAMA_PROBE_ROOT="$root" \
    python3 "$here/real_gpu_check.py" "$out/rgc"
kill -TERM "$nspawn_pid" 2>/dev/null || true

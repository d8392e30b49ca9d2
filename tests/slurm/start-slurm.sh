#!/usr/bin/env bash
# Start a real single-node Slurm (Debian's slurm-wlm + munge) on this machine, for the Slurm
# profile's end-to-end test. Needs root and apt. Idempotent: does nothing if sinfo already
# answers. No accounting database, so jobs are tracked with squeue and MinJobAge is large
# (finished jobs must stay visible to squeue until Snakemake has seen them end).
set -euo pipefail

if sinfo -h >/dev/null 2>&1 && [ -n "$(sinfo -h -o %P 2>/dev/null)" ]; then
    echo "slurm already running: $(sinfo -h -o '%P %a %D %T' | head -1)"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "cannot start slurm: not root" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

conf=/etc/slurm/slurm.conf
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 9 / 10 ))
marker="# Written by pwprune's tests/slurm/start-slurm.sh"
mkdir -p /etc/slurm /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/log/munge /var/lib/munge
# Our own slurm.conf is rewritten every time (host name, CPUs and memory of *this* machine: an
# image copied to another machine must not keep the old host); someone else's is left alone.
if [ ! -f "$conf" ] || head -1 "$conf" | grep -qF "$marker"; then
    cat > "$conf" <<CONF
$marker: a single-node test cluster.
# No cgroup.conf on purpose: Slurm 22.05 rejects CgroupPlugin=disabled, and without the file
# (proctrack/linuxproc, task/none) slurmd needs no cgroup support from the container.
ClusterName=pwprune-test
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=86400
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
fi

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged --force 2>/dev/null || /usr/sbin/munged --force
# slurmctld and slurmd authenticate every message through munge: wait until it answers.
for _ in $(seq 1 20); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.5
done
munge -n | unmunge >/dev/null || { echo "munge does not answer" >&2; tail -5 /var/log/munge/munged.log >&2 || true; exit 1; }
chown -R slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -1 || true)
    case "$state" in
        idle*|mixed*|alloc*) echo "slurm up: partition debug, node $host ($state)"; exit 0 ;;
    esac
    scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm did not come up; last state: '${state:-none}'" >&2
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1

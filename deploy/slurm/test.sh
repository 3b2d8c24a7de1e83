#!/usr/bin/env bash
# Integration test of deploy/slurm on a single-node Slurm cluster started on this machine:
# munged, slurmctld and slurmd with a slurm.conf for localhost (2 CPUs), all in a temporary
# directory with their own ports and munge socket, so nothing of a real cluster is touched.
#
#   deploy/slurm/test.sh            (as root; LOOPTUNE=path/to/looptune to skip the build)
#
# 1. A shard that crashes: shard 1/2 of resnet18 alone, with a large budget, is killed with
#    SIGKILL once its log holds a few batches.
# 2. The run: submit.sh submits the 2-shard array (a small budget per shard, Cranelift) and the
#    merge job after it; shard 1 resumes the killed shard's log.
# 3. Checks: every complete line the killed shard wrote is still in its log and no config of a
#    task was measured twice; the two shards tuned disjoint sets of layers that together are
#    resnet18's 12; the merged log has a best record for every layer, `looptune best` reads it,
#    and a deploy lookup (`looptune show`) finds each layer's tuned config in it.
# 4. Two rounds (submit.sh --rounds 2, xgb): round 2's array waits for round 1's merge and
#    transfers from it; nothing is measured twice and the last merge has every layer's best.
#
# Exits 77 (and says why) when Slurm cannot be started here: not root, or the Debian packages
# slurmctld, slurmd, slurm-client and munge are not installed. Any other failure exits 1 with
# the daemons' logs printed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
model=resnet18
layers=12
# Per shard: every layer gets its warm-up batch (fallback config first) and a little more.
measure_flags=(--backend cranelift --batch-size 2 --repeat 1 --min-repeat-ms 5)
tune_flags=(--trials 18 "${measure_flags[@]}")
# The shard killed mid-run has more to do than it is given time for.
crash_flags=(--trials 400 "${measure_flags[@]}")
ctld_port=${LOOPTUNE_TEST_SLURMCTLD_PORT:-16817}
slurmd_port=${LOOPTUNE_TEST_SLURMD_PORT:-16818}

skip() {
    echo "deploy/slurm/test.sh: SKIPPED: $*" >&2
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "not root (slurmd must run as root to start jobs)"
for tool in munged slurmctld slurmd sbatch squeue scontrol sinfo scancel python3; do
    command -v "$tool" >/dev/null 2>&1 ||
        skip "\`$tool\` is missing (apt-get install -y slurmctld slurmd slurm-client munge)"
done

work=$(mktemp -d /tmp/looptune-slurm.XXXXXX)
chmod 755 "$work"
export SLURM_CONF=$work/slurm.conf

dump_logs() {
    for log in "$work"/munged.log "$work"/slurmctld.log "$work"/slurmd.log \
        "$work"/run/slurm/*.out; do
        [ -e "$log" ] || continue
        echo "----- $log (last 40 lines)" >&2
        tail -n 40 "$log" >&2
    done
}

cleanup() {
    local status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 77 ]; then
        dump_logs
    fi
    scontrol shutdown >/dev/null 2>&1 || true
    for daemon in slurmd slurmctld; do
        if [ -s "$work/$daemon.pid" ]; then
            local pid
            pid=$(cat "$work/$daemon.pid")
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill "$pid" 2>/dev/null || true
        fi
    done
    munged --stop --socket="$work/munge.socket" >/dev/null 2>&1 || true
    if [ -z "${LOOPTUNE_TEST_KEEP:-}" ]; then
        rm -rf "$work"
    else
        echo "kept $work" >&2
    fi
    exit "$status"
}
trap cleanup EXIT

fail() {
    echo "deploy/slurm/test.sh: FAILED: $*" >&2
    exit 1
}

# The binary, unless given.
if [ -z "${LOOPTUNE:-}" ]; then
    (cd "$repo" && cargo build --release --bin looptune --quiet)
    LOOPTUNE=${CARGO_TARGET_DIR:-$repo/target}/release/looptune
fi
LOOPTUNE=$(realpath "$LOOPTUNE")
[ -x "$LOOPTUNE" ] || fail "no looptune binary at $LOOPTUNE"
export LOOPTUNE
started=$(date +%s)
# The C backend is not used, but keep any cache away from the user's.
export LOOPTUNE_CACHE_DIR=$work/cache

# munge: a fresh key and a socket of our own.
mkdir -p "$work/state" "$work/spool"
head -c 1024 /dev/urandom >"$work/munge.key"
chmod 600 "$work/munge.key"
munged --socket="$work/munge.socket" --key-file="$work/munge.key" \
    --log-file="$work/munged.log" --pid-file="$work/munged.pid" \
    --seed-file="$work/munged.seed" || fail "munged did not start"

node=$(hostname -s)
cat >"$SLURM_CONF" <<CONF
ClusterName=looptunetest
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=$node NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
for _ in $(seq 100); do
    if sinfo --noheader --states=idle --format=%n 2>/dev/null | grep -qx "$node"; then
        break
    fi
    sleep 0.2
done
sinfo --noheader --states=idle --format=%n | grep -qx "$node" || fail "the node never became idle"
echo "slurm: a 2-CPU cluster on $node is up ($(($(date +%s) - started)) s)" >&2

# Waits until job $1 (all its array tasks) has left the queue; fails after $2 seconds.
wait_for_job() {
    local job=$1 limit=$2 waited=0
    while [ -n "$(squeue --noheader --jobs="$job" 2>/dev/null)" ]; do
        sleep 1
        waited=$((waited + 1))
        [ "$waited" -lt "$limit" ] || fail "job $job still queued or running after $limit s"
    done
}

# The state a finished job ended in (COMPLETED, FAILED, CANCELLED...), from the controller.
job_state() {
    scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1
}

# Complete records of a log: "workload target config_index" per line.
tasks_and_configs() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    print(r["workload"], json.dumps(r["target"], sort_keys=True), r["config_index"])
' "$1"
}

run=$work/run
mkdir -p "$run/shards" "$run/slurm"
shard1=$run/shards/$model.shard-1-of-2.tunelog

# 1. A shard that dies mid-run.
crash=$(LOOPTUNE_DIR=$run LOOPTUNE_MODEL=$model LOOPTUNE_SHARD_COUNT=2 \
    sbatch --parsable --export=ALL --array=1 --output="$run/slurm/crash-%a.out" \
    "$repo/deploy/slurm/tune-shard.sbatch" "${crash_flags[@]}")
crash=${crash%%;*}
for _ in $(seq 300); do
    [ -e "$shard1" ] && [ "$(grep -c '' "$shard1")" -ge 6 ] && break
    sleep 0.2
done
if ! { [ -e "$shard1" ] && [ "$(grep -c '' "$shard1")" -ge 6 ]; }; then
    fail "the shard to kill logged fewer than 6 records in 60 s"
fi
scancel --signal=KILL --full "$crash"
wait_for_job "$crash" 60
cp "$shard1" "$work/killed.tunelog"
killed_records=$(tasks_and_configs "$work/killed.tunelog" | wc -l)
echo "slurm: shard 1/2 killed (job $crash, $(job_state "$crash")) after $killed_records records" >&2

# 2. The run: both shards (shard 1 resumes), then the merge.
merge_job=$("$repo/deploy/slurm/submit.sh" "$model" 2 "$run" "${tune_flags[@]}")
wait_for_job "$merge_job" 900
state=$(job_state "$merge_job")
[ "$state" = COMPLETED ] || fail "the merge job $merge_job ended $state"
merged=$run/$model.tunelog
[ -s "$merged" ] || fail "no merged log at $merged"

# 3a. The killed shard lost nothing and re-measured nothing.
complete=$(python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
print(data.rfind(b"\n") + 1)' "$work/killed.tunelog")
cmp -n "$complete" "$work/killed.tunelog" "$shard1" ||
    fail "the resubmitted shard rewrote the records of the killed one"
dupes=$(tasks_and_configs "$shard1" | sort | uniq -d | wc -l)
[ "$dupes" -eq 0 ] || fail "$dupes configs of shard 1 were measured twice"
[ "$(tasks_and_configs "$shard1" | wc -l)" -gt "$killed_records" ] ||
    fail "the resubmitted shard measured nothing"

# 3b. Disjoint shards covering the model.
shard_workloads() { tasks_and_configs "$1" | cut -d' ' -f1 | sort -u; }
shard_workloads "$run/shards/$model.shard-0-of-2.tunelog" >"$work/w0"
shard_workloads "$shard1" >"$work/w1"
[ "$(comm -12 "$work/w0" "$work/w1" | wc -l)" -eq 0 ] || fail "a layer was tuned by both shards"
[ "$(sort -u "$work/w0" "$work/w1" | wc -l)" -eq "$layers" ] ||
    fail "the shards tuned $(sort -u "$work/w0" "$work/w1" | wc -l) layers, not $layers"

# 3c. The merge: every record of both shards once, a best per layer, read by `best` and `show`.
expected=$(cat "$run"/shards/*.tunelog | python3 -c '
import json, sys
seen = set()
for line in sys.stdin:
    try:
        seen.add(json.dumps(json.loads(line), sort_keys=True))
    except ValueError:
        pass
print(len(seen))')
[ "$(grep -c '' "$merged")" -eq "$expected" ] ||
    fail "the merged log has $(grep -c '' "$merged") records, the shards $expected distinct ones"
best=$("$LOOPTUNE" best --log "$merged" --json)
best_count=$(python3 -c 'import json, sys; print(len(json.loads(sys.argv[1])))' "$best")
[ "$best_count" -eq "$layers" ] || fail "looptune best lists $best_count layers, not $layers"
while read -r workload; do
    "$LOOPTUNE" show --log "$merged" --backend cranelift "$workload" >/dev/null 2>"$work/show.err" ||
        fail "looptune show $workload: $(cat "$work/show.err")"
    grep -q "config: best of .* for this target" "$work/show.err" ||
        fail "the deploy lookup of $workload did not find its tuned config: $(cat "$work/show.err")"
done < <(sort -u "$work/w0" "$work/w1")

# 4. Two rounds with transfer (xgb), chained by dependencies: round 2's shards start after
#    round 1's merge and read it, each record once in the end.
rounds=$work/rounds
"$repo/deploy/slurm/submit.sh" --rounds 2 "$model" 2 "$rounds" --tuner xgb "${tune_flags[@]}" \
    >"$work/rounds.job"
wait_for_job "$(cat "$work/rounds.job")" 900
state=$(job_state "$(cat "$work/rounds.job")")
[ "$state" = COMPLETED ] || fail "the second round's merge job ended $state"
for index in 0 1; do
    out=$rounds/slurm/round-2-shard-$index.out
    grep -q "count as measured and pre-train" "$out" ||
        fail "round 2's shard $index did not read round 1's merge"
    grep -q "xgb pre-trained on" "$out" ||
        fail "round 2's shard $index did not transfer from round 1's merge"
    log=$rounds/shards/$model.shard-$index-of-2.tunelog
    [ "$(tasks_and_configs "$log" | sort | uniq -d | wc -l)" -eq 0 ] ||
        fail "round 2's shard $index measured a config of round 1 again"
done
best_count=$("$LOOPTUNE" best --log "$rounds/$model.tunelog" --json |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)))')
[ "$best_count" -eq "$layers" ] || fail "after two rounds, best lists $best_count layers"
rounds_records=$(grep -c '' "$rounds/$model.tunelog")

echo "deploy/slurm/test.sh: PASSED in $(($(date +%s) - started)) s: 2 shards of $model," \
    "$(grep -c '' "$merged") records merged, a best for each of the $layers layers;" \
    "the killed shard resumed with its $killed_records records; two rounds with transfer" \
    "merged $rounds_records records" >&2

#!/usr/bin/env bash
# Tunes a built-in model on a Slurm cluster in N shards, in one or more rounds:
#
#   deploy/slurm/submit.sh [--rounds R] [--sbatch "FLAGS"] MODEL N DIR [tune-model flags...]
#
# Round 1 is a job array of N shards (tune-shard.sbatch) and a merge job that waits for all of
# them (--dependency=afterok); each later round is another array that starts after the previous
# merge and reads it with --transfer-from (with --tuner xgb, every shard's models pre-train on
# the other shards' shapes of the same operator), then its merge. DIR must be visible from every
# node; the merged log is DIR/MODEL.tunelog. Prints the job ids, the last merge's last.
# --sbatch adds flags to every sbatch (a partition, an account, a time limit).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
rounds=1
extra_sbatch=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --sbatch) extra_sbatch=$2; shift 2 ;;
        *) break ;;
    esac
done
if [ $# -lt 3 ]; then
    echo "usage: $0 [--rounds R] [--sbatch FLAGS] MODEL SHARDS DIR [tune-model flags...]" >&2
    exit 2
fi
model=$1 shards=$2 dir=$3
shift 3
case "$shards" in
    '' | *[!0-9]*) echo "error: SHARDS \`$shards\` is not a whole number" >&2; exit 2 ;;
esac
case "$rounds" in
    '' | *[!0-9]* | 0) echo "error: --rounds \`$rounds\` is not a whole number of at least 1" >&2; exit 2 ;;
esac
if [ "$shards" -lt 1 ]; then
    echo "error: SHARDS must be at least 1" >&2
    exit 2
fi
mkdir -p "$dir/shards" "$dir/slurm"
dir=$(cd "$dir" && pwd)
export LOOPTUNE_DIR=$dir LOOPTUNE_MODEL=$model LOOPTUNE_SHARD_COUNT=$shards
# shellcheck disable=SC2086 # extra_sbatch is a list of flags
submit() { sbatch --parsable --export=ALL $extra_sbatch "$@"; }

dependency=()
for ((round = 1; round <= rounds; round++)); do
    transfer=()
    if [ "$round" -gt 1 ]; then
        transfer=(--transfer-from "$dir/$model.tunelog")
    fi
    array=$(submit "${dependency[@]}" --array="0-$((shards - 1))" \
        --output="$dir/slurm/round-$round-shard-%a.out" \
        "$here/tune-shard.sbatch" "$@" "${transfer[@]}")
    array=${array%%;*}
    merge=$(submit --dependency="afterok:$array" \
        --output="$dir/slurm/round-$round-merge.out" "$here/merge.sbatch")
    merge=${merge%%;*}
    echo "round $round: shards job $array, merge job $merge" >&2
    dependency=(--dependency="afterok:$merge")
done
echo "$merge"

#!/usr/bin/env bash
# Chaos: under steady load, kill -9 a random child of pgrelayd every half
# second for CHAOS_SECONDS (default 60) while scaling the consumers up and
# down; then stop the load and compare A and B row by row.  Zero lost,
# zero duplicated; the counts are printed.
. "$(dirname "$0")/lib.sh"

CHAOS_SECONDS=${CHAOS_SECONDS:-60}
# The victims and the scaling signals follow the seed (CHAOS_SEED replays
# a run's choices; the timing of the processes may still differ).
T_SEED=${CHAOS_SEED:-$(( $(date +%s%N) % 32768 ))}
RANDOM=$T_SEED
diag "seed $T_SEED"
T_PARTITIONS=6 T_CONSUMERS=2 T_CONSUMERS_MIN=1 T_INTENSITY=1000 T_BACKOFF=100
CONF=$(write_config)
reset_pipeline >/dev/null
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2009-01-01', 'c', 20000 + i FROM generate_series(1, 3000) i"
start_worker sup pgrelayd -c "$CONF"
wait_until 60 same_rows
compare_ab "before the chaos" =3000

first=$(last_change)
load_a $((CHAOS_SECONDS + 5)) 1 & l1=$!
load_a $((CHAOS_SECONDS + 5)) 2 & l2=$!
kills=0 scales=0
end=$((SECONDS + CHAOS_SECONDS))
while [ $SECONDS -lt $end ]; do
	# a running child, not one already asked to stop (that one may
	# exit on its own between this look and the kill)
	pids=($(sup_status --json 2>/dev/null |
		jq -r '.children[] | select(.state == "running" and .kind != "snapshot") | .pid' |
		sort -n))
	if [ ${#pids[@]} -gt 0 ]; then
		kill_child "${pids[RANDOM % ${#pids[@]}]}" && kills=$((kills + 1))
	fi
	if [ $((kills % 6)) = 0 ]; then
		if [ $((RANDOM % 2)) = 0 ]; then kill -USR1 "${T_PIDS[sup]}"; else kill -USR2 "${T_PIDS[sup]}"; fi
		scales=$((scales + 1))
	fi
	sleep 0.5
done
wait "$l1" "$l2"
ok "$([ "$kills" -ge $((CHAOS_SECONDS)) ]; echo $?)" "killed -9 $kills children and sent $scales scaling signals in ${CHAOS_SECONDS}s"
kill -0 "${T_PIDS[sup]}"
ok $? "pgrelayd is still running"
changes=$(changes_since "$first")
ok "$([ "$changes" -ge $((CHAOS_SECONDS * 50)) ]; echo $?)" \
    "the load wrote $changes changes during the chaos (at least $((CHAOS_SECONDS * 50)))"
load_errors "$LOAD_DEADLOCKS"
restarts=$(sup_status --json | jq '[.children[].restarts] | add')
wait_until 180 same_rows
rows_a > "$T_DIR/a.rows"; rows_b > "$T_DIR/b.rows"
lost=$(comm -23 <(sort "$T_DIR/a.rows") <(sort "$T_DIR/b.rows") | wc -l)
extra=$(comm -13 <(sort "$T_DIR/a.rows") <(sort "$T_DIR/b.rows") | wc -l)
diag "chaos: kills $kills, restarts $restarts, scaling signals $scales, changes $changes, rows A $(wc -l < "$T_DIR/a.rows"), rows B $(wc -l < "$T_DIR/b.rows"), lost $lost, extra or stale $extra"
is "$lost" 0 "zero rows lost"
is "$extra" 0 "zero rows extra or stale on B"
compare_ab "after the chaos" 3000
versions_match "after the chaos"
topic_complete "after the chaos" at-least-once "$changes"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

#!/usr/bin/env bash
# kill -9 of the producer, of consumers and of the snapshot worker in the
# middle of a load: nothing lost, nothing duplicated, A and B equal row by
# row.  The pattern of PostgreSQL's 013_crash_restart.pl.
. "$(dirname "$0")/lib.sh"

T_SNAPSHOT_BATCH=2000
CONF=$(write_config)
reset_pipeline >/dev/null

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2007-01-01' + (i % 5000), 'c', 10001 + i
         FROM generate_series(1, 100000) i"
ok $? "100000 existing rows on A"

# The snapshot killed half-way resumes where it stopped.
start_worker snap snapshot -c "$CONF"
wait_until 60 'test "$(qa -c "SELECT coalesce(max(rows_done), 0) FROM pgrelay_snapshot_state")" -ge 20000'
kill -9 "${T_PIDS[snap]}"; wait "${T_PIDS[snap]}" 2>/dev/null; unset "T_PIDS[snap]"
part=$(qa -c "SELECT rows_done FROM pgrelay_snapshot_state")
is "$(qa -c "SELECT done FROM pgrelay_snapshot_state")" f "snapshot killed -9 before it finished ($part rows done)"

# Writes between the kill and the resumed run: the resumed part sees them,
# the stream delivers them too; B must not go back to an older state.
qa -c "UPDATE employees SET city = 'moved' WHERE emp_id % 1000 = 0"
qa -c "DELETE FROM employees WHERE emp_id % 1000 = 1"
"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snap2.log" 2>&1
is "$?" 0 "the snapshot run again finishes"
grep -q "resuming the snapshot at public.employees after key {[0-9]*}" "$T_DIR/snap2.log"
ok $? "it resumed rather than starting over"

start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
start_worker c2 consumer -c "$CONF"
wait_until 120 same_rows
compare_ab "after a resumed snapshot" =99900

first=$(last_change)
load_a 20 1 & l1=$!
load_a 20 2 & l2=$!
hits=0 kills=0
for round in 1 2 3; do
	sleep 2
	for w in producer c1 c2; do
		# a kill that hit a live worker ends it by signal 9 (wait: 137);
		# one that exited already would give its own exit code
		stop_worker "$w" KILL
		rc=$?
		kills=$((kills + 1))
		if [ "$rc" -eq 137 ]; then hits=$((hits + 1)); else diag "round $round: $w had already ended (exit status $rc)"; fi
		sleep 0.3
		if [ "$w" = producer ]; then
			start_worker producer producer -c "$CONF"
		else
			start_worker "$w" consumer -c "$CONF"
		fi
	done
done
wait "$l1" "$l2"
is "$hits" "$kills" "kill -9 hit a live producer or consumer each of the $kills times, under load"
changes=$(changes_since "$first")
ok "$([ "$changes" -ge 2000 ]; echo $?)" "the load wrote $changes changes during the kills (at least 2000)"
load_errors "$LOAD_DEADLOCKS"
wait_until 120 same_rows
compare_ab "after kill -9 under load" 99000
versions_match "after kill -9 under load"
topic_complete "after kill -9 under load" at-least-once $((changes + 200))

stop_worker producer
stop_worker c1
stop_worker c2
done_testing

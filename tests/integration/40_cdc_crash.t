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
grep -q "resuming the snapshot after emp_id" "$T_DIR/snap2.log"
ok $? "it resumed rather than starting over"

start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
start_worker c2 consumer -c "$CONF"
wait_until 120 same_rows
compare_ab "after a resumed snapshot"

load_a 20 1 & l1=$!
load_a 20 2 & l2=$!
restarts=0
for round in 1 2 3; do
	sleep 2
	for w in producer c1 c2; do
		kill -9 "${T_PIDS[$w]}" 2>/dev/null
		wait "${T_PIDS[$w]}" 2>/dev/null
		sleep 0.3
		if [ "$w" = producer ]; then
			start_worker producer producer -c "$CONF"
		else
			start_worker "$w" consumer -c "$CONF"
		fi
		restarts=$((restarts + 1))
	done
done
wait "$l1" "$l2"
is "$restarts" 9 "killed -9 and restarted producer and consumers 3 times each under load"
changes=$(qa -c "SELECT count(*) FROM emp_cdc")
diag "changes written during the test: $changes"
wait_until 120 same_rows
compare_ab "after kill -9 under load"
dups=$(qb -c "SELECT count(*) - count(DISTINCT emp_id) FROM employees")
is "$dups" 0 "no row duplicated on B"
is "$(qb -c "SELECT count(*) FROM employees e JOIN pgrelay_row_version v USING (emp_id) WHERE v.deleted")" 0 \
    "no deleted row came back"

stop_worker producer
stop_worker c1
stop_worker c2
done_testing

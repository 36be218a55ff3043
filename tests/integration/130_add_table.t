#!/usr/bin/env bash
# A table added to cdc.tables by a reload is captured, snapshotted alone
# and then streamed, while the table already there keeps streaming: its
# latency during the new table's copy is measured and must stay low.
# Removing the table again stops its capture's use and says so.
. "$(dirname "$0")/lib.sh"

qa -c "DROP TABLE IF EXISTS added; CREATE TABLE added (id bigint PRIMARY KEY, v text, n numeric)" 2>/dev/null &&
qb -c "DROP TABLE IF EXISTS added; CREATE TABLE added (id bigint PRIMARY KEY, v text, n numeric)" 2>/dev/null
ok $? "table added on A and B"
qa -c "INSERT INTO added SELECT g, repeat('x', 100), g / 3.0 FROM generate_series(1, 200000) g"
EMP='{ source = "employees"; topic = "'"$T_TOPIC"'"; rules = [ "salary > 10000" ]; }'
T_TABLES=$EMP
CONF=$(write_config)
reset_pipeline >/dev/null
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1 && test "$(running_count consumer)" = 1'
is "$(qb -c "SELECT count(*) FROM added")" 0 "the table not in the config is not copied"

# latency PHASE N: inserts N employees one at a time, each waited for on
# B (20 s at most); prints each latency in ms.
latency() {
	local i t0 t1
	for i in $(seq 1 "$2"); do
		t0=$(date +%s%N)
		qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
		       VALUES ('lat-$1', '$i', '2008-01-01', 'c', 20000)"
		for _ in $(seq 1 2000); do
			[ "$(qb -c "SELECT count(*) FROM employees WHERE first_name = 'lat-$1' AND last_name = '$i'")" = 1 ] && break
			sleep 0.01
		done
		t1=$(date +%s%N)
		echo $(( (t1 - t0) / 1000000 ))
	done
}
latency before 20 > "$T_DIR/lat.before"

T_TABLES="$EMP,
{ source = \"added\"; topic = \"$T_TOPIC.added\"; }" write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 20 'grep -q "copying public.added, added to the config" "$T_DIR/sup.log"'
grep -q "copying public.added, added to the config" "$T_DIR/sup.log"
ok $? "after the reload the snapshot copies the added table alone"
latency during 40 > "$T_DIR/lat.during" &
lat=$!
qa -c "UPDATE added SET v = 'streamed' WHERE id % 1000 = 0; DELETE FROM added WHERE id % 1000 = 1;
       INSERT INTO added VALUES (300000, 'new', 1)"
wait "$lat"
wait_until 120 'grep -q "copied public.added: 200000 rows" "$T_DIR/sup.log"'
grep -q "copied public.added: 200000 rows" "$T_DIR/sup.log"
ok $? "the snapshot copied its 200000 rows"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM added")" = "$(qa -c "SELECT count(*) FROM added")"'
compare_table "the added table" added id
p50() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
max() { sort -n "$1" | tail -n 1; }
diag "employees' latency before: median $(p50 "$T_DIR/lat.before") ms, max $(max "$T_DIR/lat.before") ms; during the copy of 200000 rows: median $(p50 "$T_DIR/lat.during") ms, max $(max "$T_DIR/lat.during") ms"
# (each measure includes a psql per poll: the before figures are that floor)
[ "$(max "$T_DIR/lat.during")" -lt 5000 ]
ok $? "employees' changes reach B within 5 s during the copy (max $(max "$T_DIR/lat.during") ms)"
compare_ab "employees meanwhile" 1

# Removed again: its changes are no longer sent, and the log says so.
T_TABLES=$EMP write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 20 'grep -q "table added is captured on the source (rel [0-9]*) but not in cdc.tables" "$T_DIR/sup.log"'
grep -q "table added is captured on the source (rel [0-9]*) but not in cdc.tables" "$T_DIR/sup.log"
ok $? "removing it from the config: the producer says its capture is unused"
qa -c "UPDATE added SET v = 'after removal' WHERE id = 2"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary) VALUES ('after', 'removal', '2008-01-01', 'c', 20000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE first_name = '\''after'\''")" = 1'
is "$(qb -c "SELECT v FROM added WHERE id = 2")" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
    "and its changes no longer reach B"
"$BIN/pgrelayctl" -c "$CONF" capture-sql > "$T_DIR/capture.sql"
grep -q "DROP TRIGGER IF EXISTS pgrelay_capture ON added" "$T_DIR/capture.sql"
ok $? "pgrelayctl capture-sql prints the SQL that drops its capture"
qa -f "$T_DIR/capture.sql" > /dev/null
is "$(qa -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'added'::regclass AND NOT tgisinternal")" 0 \
    "which an administrator runs"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

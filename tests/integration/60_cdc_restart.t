#!/usr/bin/env bash
# Restarts of the servers under load: B's PostgreSQL, the Kafka broker and
# A's PostgreSQL are each restarted while changes flow, then B crashes
# (an immediate stop: the consumers commit asynchronously, so B loses its
# last batches and their offsets together); afterwards A and B are equal
# row by row.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2008-01-01', 'c', 20000 + i FROM generate_series(1, 5000) i"
"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "snapshot of 5000 rows"
start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
start_worker c2 consumer -c "$CONF"
wait_until 60 same_rows
compare_ab "before the restarts" =5000

restart() {	# restart SERVICE: one TAP line
	"$ROOT/scripts/stack" restart "$1" > "$T_DIR/restart-$1.log" 2>&1
	ok $? "restarted $1 under load"
}

# Writers that survive A's restart: each batch is its own psql session.
keep_writing() {
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt $end ]; do load_a 2 "$2"; done
}
crash() {	# crash SERVICE: one TAP line
	"$ROOT/scripts/stack" crash "$1" > "$T_DIR/crash-$1.log" 2>&1
	ok $? "crashed $1 under load and started it again"
}
first=$(last_change)
keep_writing 36 1 & l1=$!
sleep 3; restart pg-b
sleep 4; restart kafka
sleep 4; restart pg-a
sleep 3; restart kafka
sleep 3; crash pg-b
wait "$l1"
changes=$(changes_since "$first")
ok "$([ "$changes" -ge 2000 ]; echo $?)" "the load wrote $changes changes through the restarts (at least 2000)"
# A's restart ends the writer's session; while A is down it cannot connect
load_errors "$LOAD_DEADLOCKS|terminating connection|server closed the connection|connection to server|the database system is (shutting down|starting up|in recovery mode)|could not connect|no connection to the server"
wait_until 180 same_rows
compare_ab "after restarting B, the broker, A and the broker again, and crashing B" 5000
versions_match "after the restarts and B's crash"
for w in producer c1 c2; do
	kill -0 "${T_PIDS[$w]}" 2>/dev/null
	ok $? "$w survived every restart without exiting"
done
for w in c1 c2; do
	# the outage shows as a batch that lost its connection (retried) or
	# as a connection that could not be opened (retried with back-off)
	grep -qE "applying a batch of [0-9]+ to the target: .*connection.*; it is retried|target database: .*; retrying" "$T_DIR/$w.log"
	ok $? "consumer $w logged B's outage and retried"
done

stop_worker producer
stop_worker c1
stop_worker c2
done_testing

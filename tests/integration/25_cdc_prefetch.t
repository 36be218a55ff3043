#!/usr/bin/env bash
# A consumer's prefetch limit (512 KB, common/kafka.h) must not stall the
# stream.  librdkafka 2.0.2 stops fetching once a fetch takes its queue
# past the limit, and looks again only when its broker thread wakes, up to
# a second later; the consumer wakes it when its queue runs dry (sink.c,
# Prefetch).  Each round: a backlog of 640 KB waits on the topic; a
# consumer starts, its first fetch takes all of it (past the limit), and
# the moment B holds it, one new row is inserted on A.  It must show on B
# in under 500 ms.  Without the wake it waits for the broker thread's next
# look, about a second after that first fetch (measured with the wake
# disabled: 850-920 ms, in 4 of 5 rounds and in 5 of 5).
. "$(dirname "$0")/lib.sh"

# b_wait SECONDS CONDITION: inside B, until the SQL condition holds,
# checked every 2 ms (a psql per check would take longer than that);
# fails (an exception, psql exits 1) if it does not hold in time.
b_wait() {
	qb -c "DO \$\$ BEGIN
	         FOR i IN 1..$(($1 * 500)) LOOP
	           IF $2 THEN RETURN; END IF;
	           PERFORM pg_sleep(0.002);
	         END LOOP;
	         RAISE EXCEPTION 'not within $1 s: %', \$c\$$2\$c\$;
	       END \$\$"
}

T_PARTITIONS=8 CONF=$(write_config)
reset_pipeline >/dev/null
ok $? "pipeline tables reset"

"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "the snapshot (of no rows) is done"
start_worker producer producer -c "$CONF"
rounds=5 slow=0
for round in $(seq 1 $rounds); do
	# 1,600 changes of about 400 bytes: 640 KB, 80 KB per partition
	qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
	       SELECT 'r$round-' || i, repeat('l', 95), DATE '2008-01-01',
	              repeat('c', 95), 20000 + i
	         FROM generate_series(1, 1600) i"
	wait_until 30 'test "$(qa -c "SELECT changes FROM pgrelay_producer_state")" = "$(qa -c "SELECT count(*) FROM pgrelay_changes")"'
	start_worker c1 consumer -c "$CONF"
	# the moment B holds the backlog (checked every 2 ms, the stall
	# would start when the first fetch stopped the fetcher), a new row
	want=$((round * 1601 - 1))
	b_wait 30 "(SELECT count(*) FROM employees) = $want" ||
	    ok 1 "round $round: B holds the backlog of $want rows"
	t0=$(date +%s%N)
	id=$(qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
	            VALUES ('after', 'backlog', DATE '2008-01-01', 'x', 20000) RETURNING emp_id")
	b_wait 10 "EXISTS (SELECT 1 FROM employees WHERE emp_id = $id)" ||
	    ok 1 "round $round: the row after the backlog shows on B"
	ms=$((($(date +%s%N) - t0) / 1000000))
	diag "round $round: the row after a 640 KB backlog showed on B after $ms ms"
	[ "$ms" -lt 500 ] || slow=$((slow + 1))
	stop_worker c1
	is $? 0 "round $round: the consumer stops cleanly"
	# the condition under test was reached: the backlog took the queue
	# past its limit and the consumer woke the stopped fetcher
	woken=$(grep "leaving the group" "$T_DIR/c1.log" | tail -n 1 |
		sed -n 's/.*fetchers woken \([0-9]*\) times.*/\1/p')
	ok "$([ "${woken:-0}" -ge 1 ]; echo $?)" "round $round: the consumer woke its fetchers (${woken:-no} times)"
done
is "$slow" 0 "the row after the backlog showed on B in under 500 ms in all $rounds rounds"
compare_ab "at the end" =$((rounds * 1601))

done_testing

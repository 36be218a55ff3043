#!/usr/bin/env bash
# A transaction that writes a lower change_id but commits after a higher
# one has been delivered must still be delivered (the failure of Kafka
# Connect's JDBC source in incrementing mode).  Also: a long-running
# transaction holds back only its own changes, and the producer says so.
# The producer reads 7 changes at a time here, so that every window of
# more than 7 changes is read in pages (one transaction of 2,000 changes,
# at the end, in 286).
. "$(dirname "$0")/lib.sh"
T_PRODUCER_BATCH=7

CONF=$(write_config)
sed -i 's/retention_s = 3600;/retention_s = 3600; long_txn_warn_s = 1;/' "$CONF"
reset_pipeline >/dev/null
"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "snapshot of an empty table"
start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"

# Session 1 opens a transaction and writes first (lower change_id) ...
mkfifo "$T_DIR/s1"
psql "$PGRELAY_SOURCE_DSN" -X -q -v ON_ERROR_STOP=1 < "$T_DIR/s1" > "$T_DIR/s1.out" 2>&1 &
s1=$!
exec 3> "$T_DIR/s1"
echo "BEGIN; INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
      VALUES (1, 'slow', 'writer', '2008-01-01', 'A', 20000);
      SELECT pg_sleep(0);" >&3
wait_until 10 'test "$(qa -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database()")" -ge 1'

# ... session 2 writes later (higher change_id) and commits first.
qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
       VALUES (2, 'fast', 'writer', '2008-01-01', 'B', 20000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 2")" = 1'
is "$(qb -c "SELECT first_name FROM employees WHERE emp_id = 2")" fast \
    "the change committed first is delivered while the other is open"
is "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 1")" 0 \
    "the open transaction's change is not visible yet"

# Let the producer run a few more rounds past the higher change_id.
sleep 1
echo "COMMIT;" >&3
exec 3>&-
wait "$s1"
ok $? "the slow transaction commits"
low=$(qa -c "SELECT change_id FROM pgrelay_changes WHERE key = '1'")
high=$(qa -c "SELECT change_id FROM pgrelay_changes WHERE key = '2'")
ok "$([ "$low" -lt "$high" ]; echo $?)" \
    "the transaction that committed last wrote the lower change_id ($low < $high)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 1")" = 1'
is "$(qb -c "SELECT first_name FROM employees WHERE emp_id = 1")" slow \
    "the change with the lower change_id, committed last, is delivered"

# Many concurrent writers, each holding its transaction for a random time,
# so commit order differs widely from change_id order.
writers=()
for w in $(seq 1 8); do
	(
		for i in $(seq 1 15); do
			id=$((1000 * w + i))
			echo "BEGIN;
			      INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
			      VALUES ($id, 'w$w', 'i$i', '2009-01-01', 'C', 30000);
			      SELECT pg_sleep(random() * 0.05);
			      UPDATE employees SET salary = salary + 1 WHERE emp_id = $id;
			      COMMIT;"
		done | psql "$PGRELAY_SOURCE_DSN" -X -q -v ON_ERROR_STOP=1 >/dev/null
	) &
	writers+=($!)
done
wfail=0
for w in "${writers[@]}"; do wait "$w" || wfail=1; done
is "$wfail" 0 "8 concurrent writers finished"
wait_until 30 same_rows
compare_ab "after 8 concurrent writers committing out of order" =122
is "$(qb -c "SELECT count(*) FROM employees WHERE salary = 30001")" 120 \
    "every concurrent row arrived with its update"

# A long transaction is reported in the producer's log, by its backend
# pid, and holds back only its own change: while it is still open, a
# later change of another row reaches B.
mkfifo "$T_DIR/s3"
psql "$PGRELAY_SOURCE_DSN" -X -q -At -v ON_ERROR_STOP=1 < "$T_DIR/s3" > "$T_DIR/s3.out" 2>&1 &
s3=$!
exec 3> "$T_DIR/s3"
echo "SELECT pg_backend_pid(); BEGIN; UPDATE employees SET city = 'long' WHERE emp_id = 2;" >&3
wait_until 10 'test -s "$T_DIR/s3.out"'
long_pid=$(head -n 1 "$T_DIR/s3.out")
in_txn() { test "$(qa -c "SELECT state FROM pg_stat_activity WHERE pid = $long_pid")" = "idle in transaction"; }
wait_until 10 in_txn
ok $? "a transaction (backend pid $long_pid) stays open after updating row 2"
sleep 1
qa -c "UPDATE employees SET city = 'other' WHERE emp_id = 1001"
wait_until 10 'test "$(qb -c "SELECT city FROM employees WHERE emp_id = 1001")" = other'
is "$(qb -c "SELECT city FROM employees WHERE emp_id = 1001")" other \
    "a change committed during a long transaction is not held back"
in_txn
ok $? "the long transaction was still open when that change reached B"
is "$(qb -c "SELECT city FROM employees WHERE emp_id = 2")" B "and its own change is not on B yet"
wait_until 10 'grep -q "transaction of backend pid $long_pid .* has been open for" "$T_DIR/producer.log"'
ok $? "the producer's warning names the long transaction (backend pid $long_pid)"
echo "COMMIT;" >&3
exec 3>&-
wait "$s3"
ok $? "the long transaction commits"
wait_until 10 'test "$(qb -c "SELECT city FROM employees WHERE emp_id = 2")" = long'
is "$(qb -c "SELECT city FROM employees WHERE emp_id = 2")" long \
    "the long transaction's change arrives when it commits"

# One transaction of 2,000 changes (1,000 rows, each inserted and updated),
# read through pages of 7: every row arrives with its update, and the
# topic carries each of A's changes exactly once.
qa -c "BEGIN;
       INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
       SELECT 20000 + i, 'bulk', 'txn', '2009-01-01', 'D', 40000 FROM generate_series(1, 1000) i;
       UPDATE employees SET salary = 40001 WHERE emp_id > 20000;
       COMMIT;"
ok $? "one transaction writes 2,000 changes"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM employees WHERE salary = 40001")" = 1000'
is "$(qb -c "SELECT count(*) FROM employees WHERE salary = 40001")" 1000 \
    "its 1,000 rows arrive with their updates"
compare_ab "at the end" =1122
versions_match "at the end"
topic_complete "at the end" once 2244

stop_worker producer
stop_worker c1
done_testing

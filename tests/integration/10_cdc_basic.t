#!/usr/bin/env bash
# CDC basics against the real stack: existing rows are snapshotted, then
# inserts, updates and deletes on A reach B through Kafka, with two
# consumers in one group.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null
ok $? "pipeline tables reset"

# 500 rows that exist before pgrelay starts (valid under the default rules).
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'first' || i, 'last' || i, DATE '2007-01-01' + (i % 3000),
              'city' || (i % 17), 10001 + i
         FROM generate_series(1, 500) i"
ok $? "500 existing rows on A"

"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "snapshot worker exits 0 when done"
is "$(qa -c "SELECT done, rows_done FROM pgrelay_snapshot_state")" "t|500" \
    "snapshot state records 500 rows done"

"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot2.log" 2>&1
is "$?" 0 "a second snapshot run exits 0 at once"
grep -q "already done" "$T_DIR/snapshot2.log"
ok $? "and says the snapshot was already done"

start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
start_worker c2 consumer -c "$CONF"

wait_until 60 same_rows
compare_ab "after the snapshot" =500

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       VALUES ('Ada', 'Lovelace', '2008-12-10', 'London', 50000)"
id=$(qa -c "SELECT emp_id FROM employees WHERE first_name = 'Ada'")
wait_until 20 'test "$(qb -c "SELECT last_name FROM employees WHERE emp_id = $id")" = Lovelace'
is "$(qb -c "SELECT first_name, city, salary, dob FROM employees WHERE emp_id = $id")" \
    "Ada|London|50000|2008-12-10" "an insert on A reaches B"

qa -c "UPDATE employees SET city = 'Paris', salary = 60000 WHERE emp_id = $id"
wait_until 20 'test "$(qb -c "SELECT city FROM employees WHERE emp_id = $id")" = Paris'
is "$(qb -c "SELECT city, salary FROM employees WHERE emp_id = $id")" "Paris|60000" \
    "an update on A reaches B"

qa -c "DELETE FROM employees WHERE emp_id = $id"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = $id")" = 0'
is "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = $id")" 0 "a delete on A reaches B"

# A key change is a delete of the old key and an insert of the new one.
qa -c "UPDATE employees SET emp_id = 100000 WHERE emp_id = 7"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 100000")" = 1'
is "$(qb -c "SELECT count(*) FROM employees WHERE emp_id IN (7, 100000)")" 1 \
    "a primary key change moves the row on B"

# Many changes in one transaction, several per row, in order.
qa -c "BEGIN;
       UPDATE employees SET salary = salary + 1 WHERE emp_id <= 100;
       UPDATE employees SET salary = salary + 1 WHERE emp_id <= 100;
       DELETE FROM employees WHERE emp_id BETWEEN 101 AND 150;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
         SELECT 'n' || i, 'm' || i, DATE '2010-01-01', 'x', 20000 + i FROM generate_series(1, 200) i;
       COMMIT;"
wait_until 30 same_rows
compare_ab "after a mixed transaction" =650

is "$(qa -c "SELECT count(*) FROM pgrelay_changes WHERE action = 'u'")" $((1 + 2 * 99)) \
    "the trigger recorded every update (Ada once, 99 rows twice)"

stop_worker c1 TERM
is "$?" 0 "a consumer asked to stop exits 0"
qa -c "UPDATE employees SET city = 'after-c1' WHERE emp_id <= 40"
wait_until 30 same_rows
compare_ab "with one consumer left after a rebalance" =650

stop_worker producer TERM
is "$?" 0 "the producer asked to stop exits 0"
stop_worker c2 TERM
done_testing

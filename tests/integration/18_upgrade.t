#!/usr/bin/env bash
# Upgrade in place from 6e4c202's schema (employees and emp_cdc on A,
# employees and pgrelay_row_version on B), with changes waiting that the
# old pipeline had not sent: the versioned SQL files migrate both
# databases, and the new pgrelay sends the waiting changes, nothing lost,
# nothing applied twice.  tests/integration/fixtures/6e4c202/ holds that
# commit's sql/ files, as an installation of it has them.  Runs in its own
# databases (pgrelay_upgrade on A's and B's servers).
. "$(dirname "$0")/lib.sh"

FIX="$(dirname "$0")/fixtures/6e4c202"
A_UPG=${PGRELAY_SOURCE_DSN/dbname=pgrelay/dbname=pgrelay_upgrade}
B_UPG=${PGRELAY_TARGET_DSN/dbname=pgrelay/dbname=pgrelay_upgrade}
for d in "$PGRELAY_SOURCE_DSN" "$PGRELAY_TARGET_DSN"; do
	psql "$d" -X -q -c "DROP DATABASE IF EXISTS pgrelay_upgrade" \
	    -c "CREATE DATABASE pgrelay_upgrade" 2>/dev/null
done
export PGRELAY_SOURCE_DSN=$A_UPG PGRELAY_TARGET_DSN=$B_UPG
apply() {	# apply DSN FILES...: in order, stopping at the first error
	local dsn=$1 f; shift
	for f in "$@"; do
		psql "$dsn" -X -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null || return 1
	done
}
apply "$A_UPG" "$FIX"/source/*.sql && apply "$B_UPG" "$FIX"/target/*.sql
ok $? "6e4c202's schema on fresh databases"
is "$(qb -c "SELECT count(*) FROM pg_proc
             WHERE proname IN ('pgrelay_apply_employee', 'pgrelay_apply_employees')")" 2 \
    "with its employees-only apply functions on B"

# The old pipeline's state: its snapshot copied 300 rows (their versions
# on B), then A changed more, which it had not sent when it stopped.
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || g, 'l' || g, DATE '2008-01-01' + g, 'c' || g % 7, 20000 + g
         FROM generate_series(1, 300) g"
qa -c "UPDATE employees SET salary = salary + 1 WHERE emp_id % 3 = 0"
cut=$(qa -c "SELECT pg_current_snapshot()")
qa -c "INSERT INTO pgrelay_snapshot_state (id, cut, rows_done, rows_total, done)
       VALUES (1, '$cut', 300, 300, true);
       INSERT INTO pgrelay_producer_state (id, snap) VALUES (1, '$cut')"
qa -c "COPY (SELECT * FROM employees) TO STDOUT" | qb -c "COPY employees FROM STDIN"
qa -c "COPY (SELECT emp_id, max(change_id) FROM emp_cdc GROUP BY emp_id) TO STDOUT" |
    qb -c "COPY pgrelay_row_version (emp_id, change_id) FROM STDIN"
# waiting: updates, deletes, inserts, a key change, a rule-breaking salary
qa -c "UPDATE employees SET city = 'moved' WHERE emp_id % 10 = 0;
       DELETE FROM employees WHERE emp_id % 25 = 1;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'n' || g, 'm' || g, DATE '2009-01-01' + g, 'new', 30000 + g
         FROM generate_series(1, 40) g;
       UPDATE employees SET emp_id = 10000 WHERE emp_id = 7"
waiting=$(qa -c "SELECT count(*) FROM emp_cdc WHERE NOT pg_visible_in_snapshot(txid, '$cut')")
[ "$waiting" -gt 50 ]
ok $? "$waiting changes wait unsent in emp_cdc"
all=$(qa -c "SELECT count(*) FROM emp_cdc")

apply "$A_UPG" "$ROOT"/sql/source/*.sql && apply "$B_UPG" "$ROOT"/sql/target/*.sql
ok $? "the current sql/ files apply over it"
is "$(qa -c "SELECT count(*) FROM pgrelay_changes")" "$all" \
    "every row of emp_cdc, sent or not, is in pgrelay_changes"
is "$(qa -c "SELECT to_regclass('emp_cdc') IS NULL")" t "emp_cdc is gone"
is "$(qa -c "SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger
             WHERE tgrelid = 'employees'::regclass AND NOT tgisinternal")" \
    "pgrelay_capture,pgrelay_capture_truncate" "employees has the new capture only"
# 6e4c202 made pgrelay_apply_employee() and pgrelay_apply_employees();
# version 4, pgrelay_truncate_employees() too.  The consumer generates
# each table's apply function instead, and 005_any_table.sql drops these.
is "$(qb -c "SELECT count(*) FROM pg_proc
             WHERE proname IN ('pgrelay_apply_employee', 'pgrelay_apply_employees',
                               'pgrelay_truncate_employees')")" 0 \
    "B's employees-only apply functions are gone"
apply "$A_UPG" "$ROOT"/sql/source/*.sql && apply "$B_UPG" "$ROOT"/sql/target/*.sql
ok $? "the files apply again (idempotent)"
is "$(qa -c "SELECT count(*) FROM pgrelay_changes")" "$all" "and move nothing twice"

# A change written after the upgrade, before pgrelay runs.
qa -c "UPDATE employees SET city = 'after' WHERE emp_id = 2"

CONF=$(write_config)
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM employees WHERE city = '\''after'\''")" = 1'
compare_ab "after the upgrade" =$(qa -c "SELECT count(*) FROM employees")
versions_match "after the upgrade"
qa -c "UPDATE employees SET city = 'streamed' WHERE emp_id = 3"
wait_until 20 'test "$(qb -c "SELECT city FROM employees WHERE emp_id = 3")" = streamed'
is "$(qb -c "SELECT city FROM employees WHERE emp_id = 3")" streamed \
    "a change after the start streams as before"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

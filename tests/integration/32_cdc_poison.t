#!/usr/bin/env bash
# Values of A that the change event cannot carry never stop the pipeline
# and are never altered silently: a dob of 'infinity', '-infinity', beyond
# 9999-12-31 or before 0001-01-01 goes to the DLQ with stage capture and
# rule source.unrepresentable, from the snapshot and from the stream, and
# the changes after it go on; a text longer than B's column (A's widened)
# goes to the DLQ from the consumer, which checks it before B would refuse
# it (a value B refuses otherwise: 30_cdc_dlq.t).  On B such a row
# keeps its previous state; a later change that can be carried applies.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null
# A's city widened to 300 (B keeps 100): put back at the end
widen() { qa -c "ALTER TABLE employees ALTER city TYPE varchar($1)"; }
restore() { reset_pipeline >/dev/null; widen 100; }
trap 'restore; cleanup' EXIT

qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES
       (1, 'plain',  'row', '2008-01-01',    'ok', 20000),
       (2, 'pos',    'inf', 'infinity',      'x',  20000),
       (3, 'neg',    'inf', '-infinity',     'x',  20000),
       (4, 'far',    'future', '12000-01-01', 'x', 20000),
       (5, 'plain',  'row', '2009-01-01',    'ok', 20000)"
ok $? "A holds rows with dob infinity, -infinity and 12000-01-01"

timeout 60 "$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "the snapshot finishes (it does not retry the unrepresentable rows forever)"
start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
wait_until 30 'test "$(qb -c "SELECT count(*) FROM employees")" = 2'
is "$(qb -c "SELECT string_agg(emp_id::text, ',' ORDER BY emp_id) FROM employees")" "1,5" \
    "B holds the rows that can be carried"

# dlq_has ID RULE REASON-PART: one DLQ entry of emp_id ID with that rule
dlq_has() {
	dlq_lines | grep -F "|{\"emp_id\":$1}" | grep -F "__pgrelay.errors.rule=$2," |
	    grep -qF "$3"
}
wait_until 20 'test "$(dlq_lines | grep -c "rule=source.unrepresentable")" -ge 3'
for want in "2#dob 'infinity' is outside" "3#dob '-infinity' is outside" "4#dob '12000-01-01' is outside"; do
	id=${want%%#*} reason=${want#*#}
	dlq_has "$id" source.unrepresentable "__pgrelay.errors.reason=$reason"
	ok $? "snapshot: emp_id $id in the DLQ as source.unrepresentable: $reason" ||
	    dlq_lines | sed 's/^/#   /' >&2
done
dlq_lines | grep -F '|{"emp_id":2}' | grep -qE "__pgrelay.errors.stage=capture,.*__pgrelay.errors.table=public.employees,__pgrelay.errors.change_id=[0-9]+"
ok $? "with stage capture, the source table and the change_id"

# The stream: an unrepresentable change, then ordinary ones behind it.
qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
       VALUES (10, 'stream', 'inf', 'infinity', 'x', 30000)"
qa -c "UPDATE employees SET dob = '0044-03-15 BC' WHERE emp_id = 1"
qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
       VALUES (11, 'after', 'it', '2010-01-01', 'y', 30000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 11")" = 1'
is "$(qb -c "SELECT first_name FROM employees WHERE emp_id = 11")" after \
    "a change after an unrepresentable one reaches B (the producer is not stuck)"
wait_until 10 'dlq_has 10 source.unrepresentable "dob '\''infinity'\''"'
ok $? "stream: the insert with dob infinity is in the DLQ"
dlq_has 1 source.unrepresentable "dob '0044-03-15 BC' is outside"
ok $? "stream: the update to a dob before 0001-01-01 is in the DLQ"
is "$(qb -c "SELECT dob FROM employees WHERE emp_id = 1")" 2008-01-01 \
    "and B keeps the row's previous state"
qa -c "UPDATE employees SET dob = '2011-11-11' WHERE emp_id IN (1, 10)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE dob = DATE '\''2011-11-11'\''")" = 2'
is "$(qb -c "SELECT string_agg(emp_id::text, ',' ORDER BY emp_id) FROM employees WHERE dob = '2011-11-11'")" "1,10" \
    "a later change that can be carried applies"

# A text longer than B's column: refused by B, alone.
widen 300
qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES
       (20, 'long', 'city', '2010-01-01', repeat('c', 200), 30000),
       (21, 'short', 'city', '2010-01-01', 'c', 30000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 21")" = 1'
ok $? "the row after a too-long city reaches B"
wait_until 10 'dlq_has 20 decode "after.city: longer than 100 characters"'
ok $? "the row whose city is longer than B's column is in the DLQ (the consumer's decoder knows B's 100)"
compare_ab "the rows that can be carried" =5 "WHERE emp_id NOT IN (2, 3, 4, 20)"
stop_worker producer
stop_worker c1
done_testing

#!/usr/bin/env bash
# Validation and the dead-letter topic: each rule's failure lands in the
# DLQ with its rule, reason and origin, and is absent from B; garbage on
# the topic goes there too and never stops the consumer.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null
"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "snapshot of an empty table"
start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"

qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES
       (1, 'good',  'row', '2007-01-01', 'ok',    10001),
       (2, 'old',   'dob', '2006-12-31', 'bad',   20000),
       (3, 'low',   'pay', '2008-01-01', 'bad',   10000),
       (-5, 'neg',  'id',  '2008-01-01', 'bad',   20000),
       (4, 'no',    'dob', NULL,         'bad',   20000),
       (5, 'no',    'pay', '2008-01-01', 'bad',   NULL)"
wait_until 30 'test "$(dlq_lines | wc -l)" -ge 5'
dlq_lines > "$T_DIR/dlq1"
is "$(wc -l < "$T_DIR/dlq1")" 5 "five invalid changes in the DLQ"
for want in '2|dob.min|dob 2006-12-31 is before 2007-01-01' \
            '3|salary.min|salary 10000 is not above 10000' \
            '-5|emp_id.min|emp_id -5 is below 0' \
            '4|dob.required|dob is missing for emp_id 4' \
            '5|salary.required|salary is missing for emp_id 5'; do
	IFS='|' read -r id rule reason <<< "$want"
	line=$(grep -F "|{\"emp_id\":$id}" "$T_DIR/dlq1")
	[ "$(printf '%s\n' "$line" | grep -c .)" -eq 1 ] &&
	echo "$line" | grep -qF "__pgrelay.errors.rule=$rule," &&
	echo "$line" | grep -qF "__pgrelay.errors.reason=$reason," &&
	echo "$line" | grep -qF "__pgrelay.errors.stage=validate" &&
	echo "$line" | grep -qF "__pgrelay.errors.topic=$T_TOPIC," &&
	echo "$line" | grep -qE "__pgrelay.errors.partition=[0-9]+" &&
	echo "$line" | grep -qE "__pgrelay.errors.offset=[0-9]+"
	ok $? "DLQ entry of emp_id $id: rule $rule, its reason, stage and origin" ||
	    diag "line: $line"
done
wait_until 10 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 1")" = 1'
is "$(qb -c "SELECT string_agg(emp_id::text, ',' ORDER BY emp_id) FROM employees")" 1 \
    "only the valid row is on B"

# The DLQ keeps the original value: it decodes to the same change.
kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_DLQ" -o beginning -e -q -f '%s\n' 2>/dev/null |
    grep -c '"op":"c"' > "$T_DIR/n"
is "$(cat "$T_DIR/n")" 5 "DLQ values are the original change events"

# An update that makes a valid row invalid is not applied: B keeps the
# last valid version.  A later valid update applies again.
qa -c "UPDATE employees SET salary = 500 WHERE emp_id = 1"
wait_until 20 'test "$(dlq_lines | wc -l)" -ge 6'
is "$(dlq_lines | tail -n 1 | grep -o '__pgrelay.errors.rule=[a-z_.]*')" \
    "__pgrelay.errors.rule=salary.min" "an update to an invalid salary goes to the DLQ"
is "$(qb -c "SELECT salary FROM employees WHERE emp_id = 1")" 10001 \
    "B keeps the last valid version of the row"
qa -c "UPDATE employees SET salary = 70000 WHERE emp_id = 1"
wait_until 20 'test "$(qb -c "SELECT salary FROM employees WHERE emp_id = 1")" = 70000'
is "$(qb -c "SELECT salary FROM employees WHERE emp_id = 1")" 70000 \
    "a later valid update applies"

# Garbage written straight to the topic.
{
	printf 'k1\tnot json at all\n'
	printf 'k2\t{"op":"x","source":{"change_id":1}}\n'
	printf 'k3\t{"op":"c","source":{"change_id":1},"after":{"emp_id":"abc"}}\n'
	printf 'k4\t{"op":"c","source":{"change_id":1},"after":{"emp_id":9,"salary":1.5}}\n'
	printf 'k5\t[1,2,3]\n'
	printf 'k6\t{"op":"c","source":{"change_id":1},"after":{"emp_id":9,"first_name":"%s"}}\n' "$(head -c 150 /dev/zero | tr '\0' x)"
	printf 'k7\t\xff\xfe\x00garbage\n'
} | kcat -b "$PGRELAY_KAFKA_BROKERS" -P -t "$T_TOPIC" -K '\t' 2>/dev/null
ok $? "seven garbage messages written to the CDC topic"
wait_until 30 'test "$(dlq_lines | grep -c '\''stage=decode'\'')" -ge 7'
is "$(dlq_lines | grep -c 'stage=decode')" 7 "all seven are in the DLQ as decode failures"
dlq_lines | grep 'k2$' | grep -qF 'op: expected one of'
ok $? "an unknown op is named as such"
dlq_lines | grep 'k3$' | grep -qF 'after.emp_id: expected an integer'
ok $? "a wrong type is named with its field"
dlq_lines | grep 'k6$' | grep -qF 'first_name: longer than 100 characters'
ok $? "an over-long string is rejected before B would refuse it"

qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
       VALUES (10, 'after', 'garbage', '2010-10-10', 'ok', 40000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id = 10")" = 1'
is "$(qb -c "SELECT first_name FROM employees WHERE emp_id = 10")" after \
    "the consumer keeps applying after garbage"
ok "$(kill -0 "${T_PIDS[c1]}" 2>/dev/null; echo $?)" "the consumer is still running"
# A change B itself refuses (here a CHECK constraint an operator added on
# B): the set-based batch fails as data, the batch is re-run a change at a
# time, and only the refused change goes to the DLQ.
qb -c "ALTER TABLE employees ADD CONSTRAINT t_refuse CHECK (city <> 'refused-by-b')"
qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary) VALUES
       (11, 'before', 'refused', '2010-10-10', 'ok',           40000),
       (12, 'the',    'refused', '2010-10-10', 'refused-by-b', 40000),
       (13, 'after',  'refused', '2010-10-10', 'ok',           40000)"
wait_until 20 'test "$(dlq_lines | grep -c "stage=apply")" -ge 1'
line=$(dlq_lines | grep 'stage=apply')
echo "$line" | grep -qF '__pgrelay.errors.rule=target.refused,' &&
echo "$line" | grep -qF 'SQLSTATE 23514' && echo "$line" | grep -qF '|{"emp_id":12}'
ok $? "the change B refuses is in the DLQ as target.refused with its SQLSTATE" ||
    diag "line: $line"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE emp_id IN (11, 13)")" = 2'
is "$(qb -c "SELECT string_agg(emp_id::text, ',' ORDER BY emp_id) FROM employees WHERE emp_id > 10")" \
    "11,13" "the other changes of its batch are applied"
qb -c "ALTER TABLE employees DROP CONSTRAINT t_refuse"
qa -c "UPDATE employees SET city = 'accepted' WHERE emp_id = 12"
wait_until 20 'test "$(qb -c "SELECT city FROM employees WHERE emp_id = 12")" = accepted'
is "$(qb -c "SELECT city FROM employees WHERE emp_id = 12")" accepted \
    "a later change of the refused row applies once B accepts it"

compare_ab "valid rows" 4 "$VALID"

stop_worker producer
stop_worker c1
done_testing

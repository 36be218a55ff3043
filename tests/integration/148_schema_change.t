#!/usr/bin/env bash
# Schema changes on A while changes flow (README, Schema changes).  Two
# tables, t_evo changed, t_other streaming throughout (its rows keep
# arriving: no table waits for another).
#  - ADD COLUMN, consumer.schema_evolution = none: t_evo's changes that
#    carry the new column go to the DLQ naming it; once B has the column,
#    they apply again; B = A after every row changes again.
#  - ADD COLUMN ... DEFAULT, add_columns (a reload), under a writer of
#    both tables, with the producer frozen over the ALTER so that one
#    window holds changes captured before it and after it: B gets the column, the older rows the
#    DEFAULT (the value A's older rows read as), the changes captured
#    before it too; no DLQ; B = A every column.
#  - DROP COLUMN: B keeps the column; a row changed afterwards holds NULL.
#  - A type change (integer -> bigint): a value B's integer cannot hold
#    goes to the DLQ naming the column, the others apply.
#  - RENAME COLUMN under add_columns: the new name is added on B and
#    carries the values; the old name is NULL in rows changed afterwards.
. "$(dirname "$0")/lib.sh"

DDL="DROP TABLE IF EXISTS t_evo, t_other;
CREATE TABLE t_evo (id integer PRIMARY KEY, v text, n integer);
CREATE TABLE t_other (id integer PRIMARY KEY, v text);"
qa -c "$DDL" && qb -c "$DDL"
ok $? "t_evo and t_other on A and B"

T_TABLES='{ source = "t_evo"; topic = "'"$T_TOPIC"'.evo"; },
{ source = "t_other"; topic = "'"$T_TOPIC"'.other"; }'
CONF=$(write_config)
reset_pipeline >/dev/null
other() {	# other FROM TO: rows of t_other
	qa -c "INSERT INTO t_other SELECT g, 'o' || g FROM generate_series($1, $2) g"
}
other_arrived() {	# other_arrived N: B holds t_other's row N
	wait_until 20 "test \"\$(qb -c 'SELECT count(*) FROM t_other WHERE id = $1')\" = 1"
}
qa -c "INSERT INTO t_evo SELECT g, 'v' || g, g FROM generate_series(1, 100) g"
other 1 100
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM t_evo")" = 100'
ok $? "the snapshot copied t_evo"

# 1. ADD COLUMN, evolution none.
qa -c "ALTER TABLE t_evo ADD COLUMN c integer"
qa -c "UPDATE t_evo SET c = id * 2 WHERE id <= 10"
other 101 110
other_arrived 110
ok $? "t_other streams while t_evo's new column is missing on B"
wait_until 20 'test "$(dlq_lines | grep -c "target.missing_column")" -ge 10'
ok $? "t_evo's changes with the new column went to the DLQ ($(dlq_lines | grep -c target.missing_column))"
dlq_lines | grep -m1 "target.missing_column" | grep -q 'column \\\?"c\\\?" of the source'"'"'s t_evo is not on the target'
ok $? "the DLQ reason names the column and what to do"
qb -c "ALTER TABLE t_evo ADD COLUMN c integer"
sleep 1.5	# the consumer reads B again at most once a second per table
qa -c "UPDATE t_evo SET v = v || '.1'"
wait_until 30 'test "$(qb -c "SELECT count(*) FROM t_evo WHERE v LIKE '\''%.1'\''")" = 100'
compare_table "ADD COLUMN, B altered by hand" t_evo id

# 2. ADD COLUMN ... DEFAULT under add_columns, a window across the ALTER.
T_EVOLUTION=add_columns
write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 30 'grep -q "schema_evolution = \"add_columns\"" "$T_DIR/run/active.conf"'
ok $? "reloaded with consumer.schema_evolution = add_columns"
sleep 2
dlq0=$(dlq_lines | wc -l)
# a writer of t_evo and t_other, one change a transaction, across the ALTER
writer() {
	local i=0 end=$((SECONDS + 4))
	while [ $SECONDS -lt $end ]; do
		qa -c "UPDATE t_evo SET v = v || 'w' WHERE id = $((i % 100 + 1));
		       INSERT INTO t_evo (id, v) VALUES ($((1000 + i)), 'w$i');
		       INSERT INTO t_other VALUES ($((1000 + i)), 'w$i')" 2>> "$T_DIR/writer.err"
		i=$((i + 1))
	done
	echo "$i" > "$T_DIR/writer.n"
}
writer &
wpid=$!
sleep 1
prod=$(child_pids producer)
kill -STOP $prod
qa -c "UPDATE t_evo SET v = v || '.before' WHERE id BETWEEN 11 AND 20"
qa -c "ALTER TABLE t_evo ADD COLUMN d text DEFAULT 'dflt'"
qa -c "UPDATE t_evo SET d = 'd' || id WHERE id BETWEEN 21 AND 30;
       INSERT INTO t_evo (id, v) VALUES (101, 'new')"
other 111 120
kill -CONT $prod
wait $wpid
ok "$([ -s "$T_DIR/writer.err" ]; echo $((1 - $?)))" \
    "the writer wrote $(cat "$T_DIR/writer.n") transactions across the ALTER, none failed"
other_arrived 120
ok $? "t_other streams across the ALTER"
wait_until 30 'test "$(qb -c "SELECT count(*) FROM t_evo")" = "$(qa -c "SELECT count(*) FROM t_evo")" &&
    test "$(qb -c "SELECT count(*) FROM t_evo WHERE id = 101")" = 1'
ok $? "the rows inserted after the ALTER arrived"
compare_table "ADD COLUMN DEFAULT, added by the consumer" t_evo id
is "$(qb -c "SELECT count(*) FROM t_evo WHERE d = 'dflt'")" \
    "$(qa -c "SELECT count(*) FROM t_evo WHERE d = 'dflt'")" \
    "B's older rows and the changes captured before the ALTER hold the DEFAULT"
is "$(dlq_lines | wc -l)" "$dlq0" "nothing went to the DLQ"

# 3. DROP COLUMN.
qa -c "ALTER TABLE t_evo DROP COLUMN n"
qa -c "UPDATE t_evo SET v = v || '.2' WHERE id = 1"
wait_until 20 'test "$(qb -c "SELECT v FROM t_evo WHERE id = 1")" = "$(qa -c "SELECT v FROM t_evo WHERE id = 1")"'
is "$(qb -c "SELECT n IS NULL FROM t_evo WHERE id = 1"),$(qb -c "SELECT n FROM t_evo WHERE id = 2")" "t,2" \
    "DROP COLUMN: B keeps the column, NULL in a row changed afterwards"

# 4. A type change B cannot hold.
qa -c "ALTER TABLE t_evo ALTER COLUMN c TYPE bigint"
qa -c "UPDATE t_evo SET c = 5000000000 WHERE id = 2; UPDATE t_evo SET c = 42 WHERE id = 3"
wait_until 20 'test "$(qb -c "SELECT c FROM t_evo WHERE id = 3")" = 42'
ok $? "a bigint value that fits B's integer applies"
wait_until 20 'dlq_lines | grep -q "after.c: "'
ok $? "a value B's integer cannot hold goes to the DLQ naming the column"

# 5. RENAME COLUMN under add_columns.
v5=$(qa -c "SELECT v FROM t_evo WHERE id = 5")
qa -c "ALTER TABLE t_evo RENAME COLUMN v TO v2"
qa -c "UPDATE t_evo SET v2 = 'renamed' WHERE id = 4"
wait_until 20 'test "$(qb -c "SELECT v2 FROM t_evo WHERE id = 4" 2>/dev/null)" = renamed'
ok $? "RENAME: the new name is added on B and carries the value"
is "$(qb -c "SELECT v IS NULL FROM t_evo WHERE id = 4"),$(qb -c "SELECT v FROM t_evo WHERE id = 5")" "t,$v5" \
    "RENAME: the old name is NULL in a row changed afterwards, kept in the others"

other 121 130
other_arrived 130
compare_table "every schema change" t_other id
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

#!/usr/bin/env bash
# TRUNCATE on A (issue 14, item 8) reaches B in order with the other
# changes: A captures it as one change (op "t"), the producer sends it to
# every partition of the CDC topic, and B deletes every row older than it
# and keeps it as a horizon below which any change arriving later (another
# partition's backlog) is stale.  Four partitions, two consumers: a
# TRUNCATE under a load of two writers (twice); a TRUNCATE followed in its
# own transaction by inserts, an update and a delete; a TRUNCATE with both
# consumers killed -9 right after B applied it; then the whole topic
# replayed from offset 0, which must change nothing; last, a TRUNCATE in
# a batch B refuses a value of, applied a message at a time.  Each time
# A = B with the exact count, B holds no row A lacks, and B's row versions
# match A's changes since its last TRUNCATE.
. "$(dirname "$0")/lib.sh"

T_PARTITIONS=4
T_CONSUMER_BATCH=200
CONF=$(write_config)
reset_pipeline >/dev/null
ok $? "pipeline tables reset"

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'first' || i, 'last' || i, DATE '2007-01-01' + (i % 3000),
              'city' || (i % 17), 10001 + i
         FROM generate_series(1, 3000) i"
ok $? "3000 existing rows on A"
"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "the snapshot worker copies them"

start_worker producer producer -c "$CONF"
start_worker c1 consumer -c "$CONF"
start_worker c2 consumer -c "$CONF"
wait_until 60 same_rows
compare_ab "after the snapshot" =3000

# The newest TRUNCATE A captured and B's truncate horizon (0 if none).
last_truncate() { qa -c "SELECT coalesce(max(change_id), 0) FROM pgrelay_changes WHERE action = 't'"; }
b_horizon() { qb -c "SELECT horizon FROM pgrelay_targets WHERE target = 'employees'::regclass"; }

# no_extra_on_b WHAT: one TAP line: every emp_id on B is on A.
no_extra_on_b() {
	qa -c "SELECT emp_id FROM employees ORDER BY emp_id" > "$T_DIR/a.ids"
	qb -c "SELECT emp_id FROM employees ORDER BY emp_id" > "$T_DIR/b.ids"
	local extra
	extra=$(comm -13 "$T_DIR/a.ids" "$T_DIR/b.ids" | wc -l)
	if [ "$extra" -eq 0 ]; then
		ok 0 "$1: B holds no row A lacks"
	else
		ok 1 "$1: B holds $extra rows A lacks"
		comm -13 "$T_DIR/a.ids" "$T_DIR/b.ids" | head -n 5 | sed 's/^/#   emp_id /' >&2
		return 1
	fi
}

# on_every_partition WHAT: one TAP line: each TRUNCATE A captured is on
# every partition of the topic, as an event of op "t" with before and
# after null and its change_id in source.
on_every_partition() {
	local want got
	want=$(qa -c "SELECT change_id || ' ' || p FROM pgrelay_changes, generate_series(0, $T_PARTITIONS - 1) p
	               WHERE action = 't' ORDER BY 1")
	got=$(kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC" -o beginning -e -q \
	    -f '%p %s\n' 2>/dev/null |
	    sed -nE 's/^([0-9]+) (\{.*"op":"t".*)$/{"p":\1,"v":\2}/p' |
	    jq -r 'select(.v.before == null and .v.after == null) | "\(.v.source.change_id) \(.p)"' |
	    sort -u)
	if [ -n "$want" ] && [ "$want" = "$got" ]; then
		ok 0 "$1: each TRUNCATE is on each of the $T_PARTITIONS partitions ($(echo "$want" | wc -l) events)"
	else
		ok 1 "$1: the TRUNCATE events on the topic are not one per TRUNCATE and partition"
		diff <(echo "$want") <(echo "$got") | head -n 8 | sed 's/^/#   /' >&2
		return 1
	fi
}

# --- 1. TRUNCATE under load, twice ------------------------------------
load_a 14 1 & l1=$!
load_a 14 2 & l2=$!
sleep 4
before=$(qa -c "SELECT max(emp_id) FROM employees")
qa -c "TRUNCATE employees"
ok $? "TRUNCATE employees on A under a load of two writers"
sleep 4
before2=$(qa -c "SELECT max(emp_id) FROM employees")
qa -c "TRUNCATE employees"
ok $? "a second TRUNCATE under the same load"
wait "$l1" "$l2"
load_errors "$LOAD_DEADLOCKS"
is "$(qa -c "SELECT count(*) FROM pgrelay_changes WHERE action = 't'")" 2 \
    "A captured each TRUNCATE as one change of action 't'"
is "$(qa -c "SELECT count(*) FROM employees WHERE emp_id <= $before2")" 0 \
    "A holds no row from before the second TRUNCATE (emp_id <= $before2; the first cut at $before)"
n=$(qa -c "SELECT count(*) FROM employees")
ok "$([ "$n" -gt 0 ]; echo $?)" "the load wrote $n rows after the second TRUNCATE"
wait_until 60 same_rows
compare_ab "after two TRUNCATEs under load" "=$n"
no_extra_on_b "after two TRUNCATEs under load"
is "$(b_horizon)" "$(last_truncate)" "B's truncate horizon is A's last TRUNCATE"
versions_match "after two TRUNCATEs under load"

# --- 2. TRUNCATE and inserts in one transaction -------------------------
qa -c "BEGIN;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
         VALUES ('gone', 'before', '2008-01-01', 'x', 20000);
       TRUNCATE employees;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
         SELECT 'tx' || i, 'n' || i, DATE '2009-01-01' + i, 'in-txn', 30000 + i
           FROM generate_series(1, 300) i;
       UPDATE employees SET city = 'updated' WHERE first_name LIKE 'tx%' AND salary % 6 = 0;
       DELETE FROM employees WHERE first_name LIKE 'tx%' AND salary % 15 = 0;
       COMMIT;"
ok $? "one transaction: an insert, TRUNCATE, 300 inserts, 50 updates, 20 deletes"
wait_until 30 same_rows
compare_ab "after TRUNCATE and inserts in one transaction" =280
no_extra_on_b "after TRUNCATE and inserts in one transaction"
# 50 updated (salary % 6 = 0), 10 of them deleted (salary % 30 = 0)
is "$(qb -c "SELECT count(*) FROM employees WHERE city = 'updated'")" 40 \
    "the updates after the TRUNCATE in its transaction are on B (40 rows)"
is "$(b_horizon)" "$(last_truncate)" "B's truncate horizon is A's last TRUNCATE"
versions_match "after TRUNCATE and inserts in one transaction"

# --- 3. kill -9 of both consumers right after B applied a TRUNCATE -------
load_a 10 3 & l3=$!
sleep 2
qa -c "TRUNCATE employees"
ok $? "a third TRUNCATE under load"
t3=$(last_truncate)
wait_until 20 'test "$(b_horizon)" -ge "$t3"'
hits=0
for w in c1 c2; do
	stop_worker "$w" KILL
	[ $? -eq 137 ] && hits=$((hits + 1))
done
is "$hits" 2 "both consumers killed -9 right after B applied the TRUNCATE"
start_worker c1b consumer -c "$CONF"
start_worker c2b consumer -c "$CONF"
wait "$l3"
load_errors "$LOAD_DEADLOCKS"
n=$(qa -c "SELECT count(*) FROM employees")
ok "$([ "$n" -gt 0 ]; echo $?)" "the load wrote $n rows after the third TRUNCATE"
wait_until 60 same_rows
compare_ab "after consumers killed -9 after a TRUNCATE" "=$n"
no_extra_on_b "after consumers killed -9 after a TRUNCATE"
is "$(b_horizon)" "$(last_truncate)" "B's truncate horizon is A's last TRUNCATE"
versions_match "after consumers killed -9 after a TRUNCATE"
on_every_partition "the topic"
topic_complete "the topic" once 1000
is "$(dlq_lines | wc -l)" 0 "nothing went to the DLQ"

# --- 4. the whole topic again, from offset 0 -----------------------------
stop_worker producer
stop_worker c1b
stop_worker c2b
# what a consumer reads (read_committed: not the records of a transaction
# a killed producer left open, which its successor aborted), and where its
# offsets end: after the last such record of each partition (a commit
# marker takes an offset too, but is never delivered)
kcat -b "$PGRELAY_KAFKA_BROKERS" -X isolation.level=read_committed -C -t "$T_TOPIC" \
    -o beginning -e -q -f '%p %o\n' 2>/dev/null > "$T_DIR/replay.offsets"
total=$(wc -l < "$T_DIR/replay.offsets")
ends=$(awk '{ if ($2 + 1 > e[$1]) e[$1] = $2 + 1 } END { for (p in e) s += e[p]; print s + 0 }' "$T_DIR/replay.offsets")
qb -c "UPDATE pgrelay_offsets SET next_offset = 0 WHERE group_id = '$T_GROUP'"
start_worker r1 consumer -c "$CONF"
start_worker r2 consumer -c "$CONF"
wait_until 60 'test "$(qb -c "SELECT coalesce(sum(next_offset), 0) FROM pgrelay_offsets
                               WHERE group_id = '"'$T_GROUP'"'")" -ge "$ends"'
stop_worker r1
stop_worker r2
counts=$(cat "$T_DIR/r1.log" "$T_DIR/r2.log" |
    sed -nE 's/.*leaving the group: applied ([0-9]+), skipped ([0-9]+), DLQ ([0-9]+).*/\1 \2 \3/p' |
    awk '{a += $1; s += $2; d += $3} END {print a + 0, s + 0, d + 0}')
is "$counts" "0 $total 0" \
    "replaying the topic's $total events changes nothing: all counted as skipped"
compare_ab "after the replay" "=$n"
versions_match "after the replay"

# --- 5. a TRUNCATE in a batch B refuses a value of ----------------------
# The batch is applied again a message at a time (the TRUNCATE as a batch
# of one of employees' apply function); only the refused change goes to
# the DLQ.
# One consumer, started on the backlog: one batch holds the TRUNCATE
# from each partition and the 100 inserts.
qb -c "ALTER TABLE employees ADD CONSTRAINT t36_refuse CHECK (city <> 'refused-by-b')"
qa -c "BEGIN;
       TRUNCATE employees;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
         SELECT 'p5', 'n' || i, DATE '2010-01-01', CASE WHEN i = 50 THEN 'refused-by-b' ELSE 'ok' END, 40000 + i
           FROM generate_series(1, 100) i;
       COMMIT;"
ok $? "a TRUNCATE and 100 inserts, one of a value B refuses"
start_worker producer2 producer -c "$CONF"
wait_until 30 'test "$(kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC" -o beginning -e -q \
    -f "x\n" 2>/dev/null | wc -l)" -ge $((total + 100 + T_PARTITIONS))'
start_worker c5 consumer -c "$CONF"
wait_until 30 'test "$(dlq_lines | wc -l)" -ge 1'
dlq_lines | grep -qF '__pgrelay.errors.rule=target.refused,'
ok $? "the change B refuses is in the DLQ as target.refused"
wait_until 30 "same_rows \"WHERE city <> 'refused-by-b'\""
compare_ab "after a refused value in the TRUNCATE's batch" =99 "WHERE city <> 'refused-by-b'"
is "$(b_horizon)" "$(last_truncate)" "B's truncate horizon is A's last TRUNCATE"
qb -c "ALTER TABLE employees DROP CONSTRAINT t36_refuse"
qa -c "UPDATE employees SET city = 'accepted' WHERE city = 'refused-by-b'"
wait_until 30 same_rows
compare_ab "after the refused row changed again" =100
no_extra_on_b "after the refused row changed again"
versions_match "after the refused row changed again"
stop_worker producer2
stop_worker c5

done_testing

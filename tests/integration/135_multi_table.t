#!/usr/bin/env bash
# Three tables written in one transaction by concurrent writers, with
# out-of-order commits across them: one position for all of A, so a
# transaction that wrote first and commits last is sent when it commits,
# for every table; A = B for each table, every column.
. "$(dirname "$0")/lib.sh"

DDL="DROP TABLE IF EXISTS m_int, m_text, m_pair;
CREATE TABLE m_int (id integer PRIMARY KEY, v integer NOT NULL, note text);
CREATE TABLE m_text (code text PRIMARY KEY, v integer NOT NULL);
CREATE TABLE m_pair (a integer, b integer, v bigint NOT NULL, PRIMARY KEY (a, b));"
qa -c "$DDL" 2>/dev/null && qb -c "$DDL" 2>/dev/null
ok $? "three tables on A and B"
T_TABLES='{ source = "m_int"; topic = "'"$T_TOPIC"'.int"; },
{ source = "m_text"; topic = "'"$T_TOPIC"'.text"; },
{ source = "m_pair"; topic = "'"$T_TOPIC"'.pair"; }'
T_CONSUMERS=2
CONF=$(write_config)
reset_pipeline >/dev/null
qa -c "INSERT INTO m_int SELECT g, 0, 'seed' FROM generate_series(1, 50) g;
       INSERT INTO m_text SELECT 'k' || g, 0 FROM generate_series(1, 50) g;
       INSERT INTO m_pair SELECT g % 5, g, 0 FROM generate_series(1, 50) g"
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1'

# Session 1 writes all three tables first (lower change_ids) and stays open ...
mkfifo "$T_DIR/s1"
psql "$PGRELAY_SOURCE_DSN" -X -q -v ON_ERROR_STOP=1 < "$T_DIR/s1" > "$T_DIR/s1.out" 2>&1 &
s1=$!
exec 3> "$T_DIR/s1"
echo "BEGIN;
      UPDATE m_int SET v = 100, note = 'slow' WHERE id = 1;
      UPDATE m_text SET v = 100 WHERE code = 'k1';
      INSERT INTO m_pair VALUES (9, 9, 100);
      SELECT pg_sleep(0);" >&3
wait_until 10 'test "$(qa -c "SELECT count(*) FROM m_pair WHERE a = 9")" = 0 &&
    test "$(qa -c "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND datname = current_database() AND state = '\''idle in transaction'\''")" -ge 1'
# ... session 2 writes the same tables later and commits first.
qa -c "BEGIN; UPDATE m_int SET v = 200 WHERE id = 2; UPDATE m_text SET v = 200 WHERE code = 'k2';
       INSERT INTO m_pair VALUES (8, 8, 200); COMMIT"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM m_pair WHERE a = 8")" = 1'
is "$(qb -c "SELECT count(*) FROM m_pair WHERE a = 9")" 0 "the open transaction's changes are not on B yet"

# Concurrent writers, each transaction over the three tables, while
# session 1 is still open (on other rows: it holds its rows' locks).
writer() {
	local w=$1 i
	for i in $(seq 1 40); do
		echo "BEGIN;
		  UPDATE m_int SET v = v + 1, note = 'w$w' WHERE id = $(( (i * 7 + w) % 49 + 2 ));
		  UPDATE m_text SET v = v + 1 WHERE code = 'k$(( (i * 3 + w) % 49 + 2 ))';
		  INSERT INTO m_pair VALUES ($w + 10, $i, $i) ON CONFLICT (a, b) DO UPDATE SET v = m_pair.v + 1;
		  DELETE FROM m_pair WHERE a = $(( i % 5 )) AND b = $(( (i * 11 + w) % 50 + 1 ));
		  COMMIT;"
	done | psql "$PGRELAY_SOURCE_DSN" -X -q > "$T_DIR/writer$w.out" 2>&1
}
wpids=()
for w in 1 2 3 4; do writer $w & wpids+=($!); done
wait "${wpids[@]}"
echo "COMMIT;" >&3
exec 3>&-
wait "$s1"
ok $? "the transaction that wrote first commits last"
qa -c "INSERT INTO m_text VALUES ('zz-last', 1)"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM m_text WHERE code = '\''zz-last'\''")" = 1'
is "$(qb -c "SELECT v || note FROM m_int WHERE id = 1")" "$(qa -c "SELECT v || note FROM m_int WHERE id = 1")" \
    "its change arrives after the later ones"
for t in m_int m_text m_pair; do
	compare_table "three tables, concurrent writers" $t "t::text"
done
grep -l "ERROR" "$T_DIR"/writer*.out >/dev/null
ok $((! $?)) "the writers had no error (deadlocks would show here)"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

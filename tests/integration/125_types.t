#!/usr/bin/env bash
# Any table, any common type: a table with every type of README's type
# table (arrays, an enum, a domain), a composite key of uuid and smallint,
# NULLs in every column and extreme values, and a table keyed by a uuid,
# replicated by snapshot and streaming through a kill -9 of each worker:
# A = B compared row by row, every column (compare_table).
. "$(dirname "$0")/lib.sh"

DDL="$(types_ddl)
DROP TABLE IF EXISTS t_uuid;
CREATE TABLE t_uuid (id uuid PRIMARY KEY, v text, n numeric);"
qa -c "$DDL" 2>/dev/null && qb -c "$DDL" 2>/dev/null
ok $? "the tables on A and B"

T_TABLES='{ source = "public.t_types"; topic = "'"$T_TOPIC"'.types"; },
{ source = "t_uuid"; topic = "'"$T_TOPIC"'.uuid"; }'
CONF=$(write_config)
reset_pipeline >/dev/null

# Extremes and NULLs, then 300 generated rows.
types_extremes '24:00:00'
gen() {	# gen FROM TO: generated rows of every type
	types_gen "$1" "$2"
	qa -c "INSERT INTO t_uuid SELECT gen_random_uuid(), 'v' || g, g / 7.0
	         FROM generate_series($1, $2) g"
}
gen 1 300
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1'
is "$(running_count producer)" 1 "the snapshot is done and the producer streams"

# Streaming: updates of every column, deletes, a key change, more rows;
# each worker killed once meanwhile.
gen 301 400
kill_child "$(child_pids producer)"
qa -c "UPDATE t_types SET i4 = i4 + 1, num = num * 3, f8 = f8 / 3, t = t || 'u',
         ts = ts + INTERVAL '1 microsecond', tstz = tstz - INTERVAL '1 day',
         ai = ai || 9, j = '{\"u\": true}', mood = 'ok' WHERE i2 % 3 = 0"
qa -c "DELETE FROM t_types WHERE i2 % 7 = 0; DELETE FROM t_uuid WHERE v LIKE 'v1%'"
wait_until 30 'test "$(running_count producer)" = 1'
kill_child "$(child_pids consumer | head -n 1)"
qa -c "UPDATE t_types SET part = part + 100 WHERE i2 % 11 = 0;
       UPDATE t_uuid SET id = gen_random_uuid() WHERE v LIKE 'v2%';
       UPDATE t_types SET d = NULL, by = NULL, ad = NULL WHERE i2 % 13 = 0"
gen 401 500
qa -c "INSERT INTO t_uuid VALUES ('ffffffff-ffff-ffff-ffff-ffffffffffff', 'last', NULL)"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM t_uuid WHERE v = '\''last'\''")" = 1'
wait_until 30 'test "$(qb -c "SELECT count(*) FROM t_types")" = "$(qa -c "SELECT count(*) FROM t_types")"'
compare_table "snapshot, streaming and kill -9" t_types "id, part"
compare_table "snapshot, streaming and kill -9" t_uuid "id"
is "$(qb -c "SELECT num FROM t_types WHERE id = '00000000-0000-0000-0000-000000000001'")" \
    "123456789012345678901234567890.123456789012345678901234567890" \
    "a numeric of 60 digits arrives digit for digit"
is "$(kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.uuid" -o beginning -c 1 -e -q -f '%k' 2>/dev/null |
      jq -r 'keys | join(",")')" id "the uuid table's events are keyed by its key"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

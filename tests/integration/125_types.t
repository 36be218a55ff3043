#!/usr/bin/env bash
# Any table, any common type: a table with every type of README's type
# table (arrays, an enum, a domain), a composite key of uuid and smallint,
# NULLs in every column and extreme values, and a table keyed by a uuid,
# replicated by snapshot and streaming through a kill -9 of each worker:
# A = B compared row by row, every column (compare_table).
. "$(dirname "$0")/lib.sh"

DDL="DROP TABLE IF EXISTS t_types, t_uuid;
DROP TYPE IF EXISTS t_mood;
DROP DOMAIN IF EXISTS t_posint;
CREATE TYPE t_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN t_posint AS integer CHECK (VALUE > 0);
CREATE TABLE t_types (
  id uuid, part smallint,
  i2 smallint, i4 integer, i8 bigint, num numeric, num2 numeric(12,3),
  f4 real, f8 double precision, b boolean, t text, vc varchar(20), ch char(5),
  by bytea, d date, tm time, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, ai int[], at text[], ad date[], an numeric[],
  mood t_mood, dom t_posint,
  PRIMARY KEY (id, part));
CREATE TABLE t_uuid (id uuid PRIMARY KEY, v text, n numeric);"
qa -c "$DDL" 2>/dev/null && qb -c "$DDL" 2>/dev/null
ok $? "the tables on A and B"

T_TABLES='{ source = "public.t_types"; topic = "'"$T_TOPIC"'.types"; },
{ source = "t_uuid"; topic = "'"$T_TOPIC"'.uuid"; }'
CONF=$(write_config)
reset_pipeline >/dev/null

# Extremes and NULLs, then 300 generated rows.
qa -c "INSERT INTO t_types VALUES
 ('00000000-0000-0000-0000-000000000001', 1, -32768, -2147483648, -9223372036854775808,
  '123456789012345678901234567890.123456789012345678901234567890', 1.5,
  3.4028235e38, 'NaN', true, E'tab\there \"quote\" \\\\ é ✓ \\n newline', 'vc', 'ab',
  '\\x00ff10', '2007-01-01', '24:00:00', '1999-12-31 23:59:59.999999', 'infinity',
  '1 year 2 mons 3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{\"b\": 1,  \"a\": [1, 2]}', '{\"b\": 1, \"a\": [1, 2]}',
  '{1,NULL,3}', '{\"x\",\"y z\",NULL,\"\"}', '{2020-02-29,1970-01-01}', '{1.5,NaN}', 'happy', 7),
 ('00000000-0000-0000-0000-000000000002', 2, 32767, 2147483647, 9223372036854775807, 'NaN', -999999999.999,
  '-Infinity', '-0', false, '', '', '', '\\x', '0001-01-01', '00:00:00', '0001-01-01 00:00:00',
  '-infinity', '-1 days -00:00:01', NULL, 'null', '[]', '{}', '{}', '{}', '{}', 'sad', 2147483647),
 ('00000000-0000-0000-0000-000000000003', 3, 0, 0, 0, '-0.000001', -0.001, 1.17549435e-38, 1e-308,
  NULL, NULL, NULL, NULL, NULL, '9999-12-31', NULL, '2262-04-11 23:47:16.854775',
  '1970-01-01 00:00:00+00', 'P0D', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 ('00000000-0000-0000-0000-000000000004', 4, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL)"
gen() {	# gen FROM TO: generated rows of every type
	qa -c "INSERT INTO t_types
	  SELECT gen_random_uuid(), (g % 100)::smallint, (g % 32767)::smallint, g * 7919,
	         g::bigint * 1000000007, (g * 1.000001) * 10::numeric ^ ((g % 40) - 20),
	         round(g / 7.0, 3), (g / 3.0)::real, (g / 7.0)::float8 * 1e10, g % 2 = 0,
	         repeat(chr(65 + g % 26), g % 50) || chr(233), left(md5(g::text), 20),
	         left(md5(g::text), 3), decode(md5(g::text), 'hex'), DATE '2000-01-01' + g,
	         TIME '00:00' + g * INTERVAL '1 second 1 millisecond',
	         TIMESTAMP '2000-01-01' + g * INTERVAL '1 hour 1 microsecond',
	         TIMESTAMPTZ '1900-01-01 00:00:00+00' + g * INTERVAL '100 days 1 microsecond',
	         g * INTERVAL '1 mon 1 day 1.000001 second', gen_random_uuid(),
	         json_build_object('g', g, 's', 'x' || g), jsonb_build_object('g', g, 'a', ARRAY[g, g + 1]),
	         ARRAY[g, NULL, g + 1], ARRAY['a' || g, NULL], ARRAY[DATE '2020-01-01' + g],
	         ARRAY[g / 3.0, -g], (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::t_mood, 1 + g
	    FROM generate_series($1, $2) g"
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

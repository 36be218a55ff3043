#!/usr/bin/env bash
# The consumer alone, for tables other than employees (issue 16, B side):
# change events written to the tables' topics by hand (kcat), as the
# producer writes them, are applied to B's tables of every type, with a
# composite uuid/text key; versions, tombstones and a TRUNCATE per table;
# rules per table (exact numerics, text, boolean, required values) to the
# DLQ; a value B refuses to the DLQ alone; a batch over two tables; and the
# configuration errors B reveals at start (a rule on a missing column, a
# missing target table): exit 78 with file:line.  Needs no database A.
. "$(dirname "$0")/lib.sh"

M=at_multi_$$ R=at_rules_$$
TM=$T_TOPIC.multi TR=$T_TOPIC.rules
qb -c "CREATE TYPE mood_$$ AS ENUM ('sad', 'ok', 'happy');
  CREATE TABLE $M (k1 uuid, k2 text, i2 smallint, i4 integer, i8 bigint, n numeric,
    n2 numeric(10,2), f4 real, f8 double precision, b boolean, t text, vc varchar(5),
    ch char(3), by bytea, d date, tm time, ts timestamp, tstz timestamptz,
    iv interval, j json, jb jsonb, ai int[], at text[], ad date[], m mood_$$,
    PRIMARY KEY (k1, k2));
  CREATE TABLE $R (id bigint PRIMARY KEY, amount numeric, note text, ok boolean)"
ok $? "B has a table of every type and a table with rules"
trap 'qb -c "DELETE FROM pgrelay_targets WHERE target::text IN ('"'$M'"', '"'$R'"')" >/dev/null 2>&1;
      qb -c "DROP TABLE IF EXISTS $M, $R; DROP TYPE IF EXISTS mood_$$" >/dev/null 2>&1; cleanup' EXIT

conf() {	# conf FILE RULES-OF-R [EXTRA-TABLE]
	write_config "$1" >/dev/null
	cat >> "$1" <<CONF
cdc = { tables = (
  { source = "public.$M"; topic = "$TM"; },
  { source = "public.$R"; topic = "$TR";
    rules = [ $2 ]; }${3:-}
); };
CONF
}
CONF=$T_DIR/pgrelay.conf
conf "$CONF" '"amount > 10.5", "id >= 1", "note <> '"'bad'"'", "ok = true"'
T_PARTITIONS=4

# put TOPIC PARTITION: key<TAB>value lines from stdin
put() { kcat -b "$PGRELAY_KAFKA_BROKERS" -P -t "$1" -p "$2" -K '\t' 2>/dev/null; }
ev() {	# ev OP VERSION ROW: a value, the row in after (before for d)
	local side=after
	[ "$1" = d ] && side=before
	printf '{"before":null,"after":null,"%s":%s,"source":{"version":"t","connector":"pgrelay","name":"t","db":"a","schema":"public","table":"x","snapshot":"false","change_id":%s,"txId":1,"ts_ms":1},"op":"%s","ts_ms":1}' \
	    "$side" "$3" "$2" "$1" | sed 's/"before":null,"after":null,"before":/"after":null,"before":/; s/"before":null,"after":null,"after":/"before":null,"after":/'
}

# Configuration errors found on B: exit 78 with file:line, before joining.
conf "$T_DIR/bad1.conf" '"amount > 10.5", "nope = 1"'
"$BIN/pgrelay-consumer" -c "$T_DIR/bad1.conf" > "$T_DIR/bad1.log" 2>&1
is "$?" 78 "a rule on a column B's table lacks: exit 78"
grep -qE "bad1.conf:[0-9]+: cdc.tables: rules: nope = 1: table public.$M|bad1.conf:[0-9]+: cdc.tables: rules: nope = 1: table public.$R has no column \"nope\"" "$T_DIR/bad1.log"
ok $? "... naming file:line, the rule, the table and the column" || diag "$(cat "$T_DIR/bad1.log")"
conf "$T_DIR/bad2.conf" '"ok > true"'
"$BIN/pgrelay-consumer" -c "$T_DIR/bad2.conf" > "$T_DIR/bad2.log" 2>&1
is "$?" 78 "a boolean rule with >: exit 78"
conf "$T_DIR/bad3.conf" '' ",
  { source = \"public.no_such_$$\"; topic = \"$T_TOPIC.none\"; }"
"$BIN/pgrelay-consumer" -c "$T_DIR/bad3.conf" > "$T_DIR/bad3.log" 2>&1
is "$?" 78 "a target table B does not have: exit 78"
grep -qE "bad3.conf:[0-9]+: cdc.tables: target: table public.no_such_$$ does not exist" "$T_DIR/bad3.log"
ok $? "... naming file:line and the table" || diag "$(cat "$T_DIR/bad3.log")"

start_worker c1 consumer -c "$CONF"
wait_until 30 'grep -q "assigned $TR \[3\]" "$T_DIR/c1.log"'
ok $? "the consumer reads both tables' topics in one group"
is "$(qb -c "SELECT count(*) FROM pgrelay_targets WHERE target::text IN ('$M', '$R') AND apply_fn LIKE 'pgrelay_apply_%'")" 2 \
    "both tables registered on B, each with its apply function"

K1='"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000001","k2":"a b"'
K2='"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000002","k2":""'
FULL='"i2":-32768,"i4":2147483647,"i8":-9223372036854775808,"n":"12345678901234567890.123456789012345678901","n2":"-12.50","f4":"NaN","f8":1.5e300,"b":true,"t":"tab\there","vc":"h\u00e9llo","ch":"ab","by":"AAEC/w==","d":-719162,"tm":86399999999,"ts":-62135596800000000,"tstz":"2020-02-29T12:34:56.123456Z","iv":"P1Y2M3DT4H5M6.5S","j":"{\"a\": [1, 2]}","jb":"{\"b\": null}","ai":[1,null,3],"at":["x","y z",null],"ad":[0,1],"m":"happy"'
{
	printf '{%s}\t%s\n' "$K1" "$(ev c 10 "{$K1,$FULL}")"
	printf '{%s}\t%s\n' "$K2" "$(ev r 11 "{$K2}")"
} | put "$TM" 0
wait_until 20 'test "$(qb -c "SELECT count(*) FROM $M")" = 2'
is "$(qb -c "SELECT count(*) FROM $M WHERE k2 = 'a b' AND i2 = -32768 AND i4 = 2147483647
    AND i8 = -9223372036854775808 AND n = '12345678901234567890.123456789012345678901'
    AND n::text = '12345678901234567890.123456789012345678901' AND n2::text = '-12.50'
    AND f4::text = 'NaN' AND f8 = 1.5e300 AND b AND t = E'tab\there' AND vc = 'héllo'
    AND ch = 'ab ' AND octet_length(ch::bytea) = 3 AND by = '\\x000102ff'
    AND d = '0001-01-01' AND tm = '23:59:59.999999' AND ts = '0001-01-01 00:00'
    AND tstz = '2020-02-29 12:34:56.123456+00' AND iv = '1 year 2 mons 3 days 04:05:06.5'
    AND j::text = '{\"a\": [1, 2]}' AND jb = '{\"b\": null}' AND ai = '{1,NULL,3}'
    AND at = '{x,\"y z\",NULL}' AND ad = '{1970-01-01,1970-01-02}' AND m = 'happy'")" 1 \
    "every type arrives exactly (numeric digits, NaN, extreme dates and times, arrays, an enum)"
is "$(qb -c "SELECT count(*) FROM $M WHERE k2 = '' AND num_nulls(i2, i4, i8, n, n2, f4, f8, b, t, vc, ch, by, d, tm, ts, tstz, iv, j, jb, ai, at, ad, m) = 23")" 1 \
    "a snapshot row of NULLs arrives with its empty-text key"

# Versions: an older change is stale in any order; a delete leaves a
# tombstone that an older snapshot row does not pass.
{
	printf '{%s}\t%s\n' "$K1" "$(ev u 9 "{$K1,\"t\":\"older\"}")"
	printf '{%s}\t%s\n' "$K1" "$(ev u 12 "{$K1,\"t\":\"newer\"}")"
	printf '{%s}\t%s\n' "$K2" "$(ev d 13 "{$K2}")"
	printf '{%s}\t%s\n' "$K2" "$(ev r 12 "{$K2,\"t\":\"ghost\"}")"
} | put "$TM" 0
wait_until 20 'test "$(qb -c "SELECT string_agg(k2 || coalesce(t, '"'-'"'), '"','"') FROM $M")" = "a bnewer"'
is "$(qb -c "SELECT string_agg(k2 || ':' || coalesce(t, '-'), ',') FROM $M")" "a b:newer" \
    "the newest change wins, a delete stays deleted against an older snapshot row"
is "$(qb -c "SELECT string_agg(k2 || ':' || change_id || ':' || deleted, ',' ORDER BY k2) FROM pgrelay_version_$(qb -c "SELECT id FROM pgrelay_targets WHERE target = '$M'::regclass")")" \
    ":13:true,a b:12:false" "the table's own version table: versions and the tombstone"

# A TRUNCATE (op t, on every partition): rows below it go, the horizon is
# the table's own, a change below it from another partition is stale.
EMP_HZ=$(qb -c "SELECT horizon FROM pgrelay_targets WHERE target = 'employees'::regclass")
printf '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000003","k2":"late"}\t%s\n' \
    "$(ev c 25 '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000003","k2":"late"}')" | put "$TM" 1
wait_until 20 'test "$(qb -c "SELECT count(*) FROM $M")" = 2'
for p in 0 1 2 3; do printf '\t%s\n' "$(ev t 20 null | sed 's/"before":null,"after":null,"after":null/"before":null,"after":null/')" | put "$TM" "$p"; done
printf '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000004","k2":"old"}\t%s\n' \
    "$(ev c 15 '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000004","k2":"old"}')" | put "$TM" 2
wait_until 20 'test "$(qb -c "SELECT horizon FROM pgrelay_targets WHERE target = '"'$M'"'::regclass")" = 20'
sleep 1
is "$(qb -c "SELECT horizon FROM pgrelay_targets WHERE target = '$M'::regclass")|$(qb -c "SELECT horizon FROM pgrelay_targets WHERE target = 'employees'::regclass")" \
    "20|$EMP_HZ" "the TRUNCATE raised this table's horizon, not employees'"
is "$(qb -c "SELECT string_agg(k2, ',' ORDER BY k2) FROM $M")" "late" \
    "rows older than the TRUNCATE went; a newer one stayed; an older change from another partition is stale"

# Rules per table, to the DLQ with their names and reasons.
{
	printf '{"id":1}\t%s\n' "$(ev c 30 '{"id":1,"amount":"10.50000000000000000001","note":"x","ok":true}')"
	printf '{"id":2}\t%s\n' "$(ev c 31 '{"id":2,"amount":"10.500","note":"x","ok":true}')"
	printf '{"id":3}\t%s\n' "$(ev c 32 '{"id":3,"amount":"11","note":"bad","ok":true}')"
	printf '{"id":4}\t%s\n' "$(ev c 33 '{"id":4,"amount":"11","note":"x","ok":false}')"
	printf '{"id":5}\t%s\n' "$(ev c 34 '{"id":5,"amount":null,"note":"x","ok":true}')"
	printf '{"id":0}\t%s\n' "$(ev d 35 '{"id":0}')"
	printf '{"id":6}\t%s\n' "$(ev d 36 '{"id":6,"amount":"1"}')"
	printf '{"id":7}\t%s\n' "$(ev c 37 '{"id":"7"}')"
} | put "$TR" 0
wait_until 20 'test "$(dlq_lines | grep -c "topic=$TR")" -ge 6'
dlq_lines | grep "topic=$TR" > "$T_DIR/dlq.rules"
for want in '2|amount.min|amount 10.500 is not above 10.5' \
            '3|note.ne|note bad is bad' \
            '4|ok.eq|ok false is not true' \
            '5|amount.required|amount is missing for id 5' \
            '0|id.min|id 0 is below 1' \
            '7|decode|after.id: expected an integer'; do
	IFS='|' read -r id rule reason <<< "$want"
	line=$(grep -F "|{\"id\":$id}" "$T_DIR/dlq.rules")
	echo "$line" | grep -qF "__pgrelay.errors.rule=$rule," &&
	echo "$line" | grep -qF "__pgrelay.errors.reason=$reason,"
	ok $? "id $id: $rule, $reason" || diag "line: $line"
done
wait_until 10 'test "$(qb -c "SELECT count(*) FROM $R")" = 1'
is "$(qb -c "SELECT string_agg(id || ':' || amount, ',') FROM $R")" "1:10.50000000000000000001" \
    "only the valid row is on B (a decimal compared exactly); a delete is checked on its key only"

# A value B refuses (a CHECK an operator added): that message alone.
qb -c "ALTER TABLE $R ADD CONSTRAINT refuse_$$ CHECK (note <> 'refused-by-b')"
{
	printf '{"id":10}\t%s\n' "$(ev c 40 '{"id":10,"amount":"20","note":"a","ok":true}')"
	printf '{"id":11}\t%s\n' "$(ev c 41 '{"id":11,"amount":"20","note":"refused-by-b","ok":true}')"
	printf '{"id":12}\t%s\n' "$(ev c 42 '{"id":12,"amount":"20","note":"c","ok":true}')"
} | put "$TR" 1
wait_until 20 'test "$(dlq_lines | grep -c "stage=apply")" -ge 1'
dlq_lines | grep 'stage=apply' | grep -qF '|{"id":11}'
ok $? "the change B refuses goes to the DLQ as target.refused, alone"
wait_until 10 'test "$(qb -c "SELECT count(*) FROM $R WHERE id IN (10, 12)")" = 2'
is "$(qb -c "SELECT string_agg(id::text, ',' ORDER BY id) FROM $R WHERE id >= 10")" "10,12" \
    "the rest of its batch is applied"

# One batch over both tables (the consumer stopped while both are written).
stop_worker c1
printf '{"id":20}\t%s\n' "$(ev c 50 '{"id":20,"amount":"99","note":"both","ok":true}')" | put "$TR" 2
printf '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000005","k2":"both"}\t%s\n' \
    "$(ev c 51 '{"k1":"6f1c2b4e-1111-4c1a-9d2b-000000000005","k2":"both","t":"x"}')" | put "$TM" 2
start_worker c2 consumer -c "$CONF"
wait_until 30 'test "$(qb -c "SELECT count(*) FROM $M WHERE k2 = '"'both'"'")$(qb -c "SELECT count(*) FROM $R WHERE id = 20")" = 11'
is "$(qb -c "SELECT count(*) FROM $M WHERE k2 = 'both'")$(qb -c "SELECT count(*) FROM $R WHERE id = 20")" 11 \
    "a restart resumes both topics from B's offsets and applies both tables"
is "$(qb -c "SELECT count(DISTINCT topic) FROM pgrelay_offsets WHERE group_id = '$T_GROUP'")" 2 \
    "B keeps the offsets of both topics"
stop_worker c2
done_testing

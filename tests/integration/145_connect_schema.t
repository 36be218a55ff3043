#!/usr/bin/env bash
# cdc.schemas: every event and key carries its Kafka Connect schema in
# JsonConverter's form ({"schema":...,"payload":...}).  Checked on the
# topics: each payload's values fit their field's schema (Connect's types
# and Debezium's names, every class), the schema lists exactly the
# payload's columns, and each record's partition is the one of its
# payload key (CRC32, what the switch's off position gives too).  The
# consumers apply both forms: a reload turns the switch off in the middle
# of a stream, B = A for both tables, and each row's records (wrapped and
# bare) stay in one partition.
. "$(dirname "$0")/lib.sh"

DDL="DROP TABLE IF EXISTS t_conn;
CREATE TABLE t_conn (
  id bigint PRIMARY KEY, i2 smallint, i4 integer NOT NULL, num numeric,
  f4 real, f8 double precision, b boolean, t text, vc varchar(10),
  by bytea, d date, tm time, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j jsonb, ai int[], ad date[]);"
qa -c "$DDL" 2>/dev/null && qb -c "$DDL" 2>/dev/null
ok $? "the every-class table on A and B"

T_PARTITIONS=4
T_TABLES='{ source = "public.employees"; topic = "'"$T_TOPIC"'"; rules = [ "emp_id >= 0" ]; },
{ source = "public.t_conn"; topic = "'"$T_TOPIC"'.conn"; }'
T_CDC_SCHEMAS=true
CONF=$(write_config)
reset_pipeline >/dev/null
gen() {	# gen FROM TO
	qa -c "INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
	  SELECT g, 'f' || g, CASE WHEN g % 5 = 0 THEN NULL ELSE 'l' || g END,
	         DATE '2008-01-01' + g, 'c' || g, 20000 + g FROM generate_series($1, $2) g;
	  INSERT INTO t_conn SELECT g, (g % 300)::smallint, g * 7, g / 7.0, g / 3.0,
	         CASE WHEN g % 17 = 0 THEN 'NaN'::float8 ELSE g * 1.5 END, g % 2 = 0,
	         'text ' || g, left('vc' || g, 10), decode(md5(g::text), 'hex'),
	         DATE '2000-01-01' + g, TIME '00:00' + g * INTERVAL '1 second',
	         TIMESTAMP '2000-01-01' + g * INTERVAL '1 hour 1 microsecond',
	         TIMESTAMPTZ '2000-01-01 00:00:00+00' + g * INTERVAL '1 day',
	         g * INTERVAL '1 day 1 second', gen_random_uuid(),
	         jsonb_build_object('g', g), ARRAY[g, NULL], ARRAY[DATE '2020-01-01' + g]
	    FROM generate_series($1, $2) g;
	  INSERT INTO t_conn (id, i4) VALUES (-$1, 0)"
}
gen 1 50	# the snapshot's
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1'
gen 51 100
qa -c "UPDATE employees SET city = 'moved' WHERE emp_id % 3 = 0;
       DELETE FROM employees WHERE emp_id % 10 = 0;
       UPDATE t_conn SET f8 = f8 * 2, ai = ai || 7, tstz = 'infinity' WHERE id % 4 = 0;
       DELETE FROM t_conn WHERE id % 9 = 0"
wait_until 60 'test "$(qb -c "SELECT count(*) FROM t_conn")" = "$(qa -c "SELECT count(*) FROM t_conn")" &&
    test "$(qb -c "SELECT count(*) FROM employees WHERE city = '\''moved'\''")" = "$(qa -c "SELECT count(*) FROM employees WHERE city = '\''moved'\''")"'
compare_table "events with their schemas" employees emp_id
compare_table "events with their schemas" t_conn id

# The switch off, in the middle of the stream (a reload).
T_CDC_SCHEMAS=false
write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 30 'grep -q "\"schemas\":false\|schemas = false" "$T_DIR/run/active.conf" 2>/dev/null'
ok $? "the reload is active with cdc.schemas off"
sleep 2
qa -c "UPDATE employees SET salary = salary + 1 WHERE emp_id % 2 = 0;
       UPDATE t_conn SET t = t || ' bare', num = num * 3 WHERE id % 2 = 0"
gen 101 120
wait_until 60 'test "$(qb -c "SELECT count(*) FROM t_conn WHERE t LIKE '\''% bare'\''")" = "$(qa -c "SELECT count(*) FROM t_conn WHERE t LIKE '\''% bare'\''")" &&
    test "$(qb -c "SELECT count(*) FROM employees")" = "$(qa -c "SELECT count(*) FROM employees")" &&
    test "$(qb -c "SELECT sum(salary) FROM employees")" = "$(qa -c "SELECT sum(salary) FROM employees")"'
compare_table "after the switch went off" employees emp_id
compare_table "after the switch went off" t_conn id

# Every record of both topics, checked against its schema.
for t in "$T_TOPIC" "$T_TOPIC.conn"; do
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$t" -o beginning -e -q -J \
	    -X isolation.level=read_committed > "$T_DIR/records.$t" 2>/dev/null
done
python3 - "$T_PARTITIONS" "$T_DIR/records.$T_TOPIC" "$T_DIR/records.$T_TOPIC.conn" \
    > "$T_DIR/check.out" 2>&1 <<'PY'
import base64, json, sys, zlib
parts = int(sys.argv[1])
INT = {"int16": 2**15, "int32": 2**31, "int64": 2**63}

def fits(sch, v, where):
    if v is None:
        assert sch["optional"], f"{where}: null in a required field"
        return
    t = sch["type"]
    if t in INT:
        assert isinstance(v, int) and not isinstance(v, bool) and -INT[t] <= v < INT[t], f"{where}: {v!r} is no {t}"
    elif t in ("float", "double"):
        # NaN and the infinities travel as strings (JSON has no NaN)
        assert (isinstance(v, (int, float)) and not isinstance(v, bool)) or v in ("NaN", "Infinity", "-Infinity"), f"{where}: {v!r} is no {t}"
    elif t == "boolean":
        assert isinstance(v, bool), f"{where}: {v!r} is no boolean"
    elif t == "string":
        assert isinstance(v, str), f"{where}: {v!r} is no string"
    elif t == "bytes":
        assert isinstance(v, str), f"{where}: {v!r} is no base64 string"
        base64.b64decode(v, validate=True)
    elif t == "array":
        assert isinstance(v, list), f"{where}: {v!r} is no array"
        for i, e in enumerate(v):
            fits(sch["items"], e, f"{where}[{i}]")
    elif t == "struct":
        assert isinstance(v, dict), f"{where}: {v!r} is no struct"
        names = [f["field"] for f in sch["fields"]]
        assert sorted(names) == sorted(v), f"{where}: schema fields {names} against payload {sorted(v)}"
        for f in sch["fields"]:
            fits(f, v[f["field"]], f"{where}.{f['field']}")
    else:
        raise AssertionError(f"{where}: unknown Connect type {t}")

stats = {"wrapped": 0, "bare": 0, "rows": 0}
for path in sys.argv[2:]:
    topic = path.split("records.", 1)[1]
    where_of = {}
    for line in open(path):
        rec = json.loads(line)
        val = json.loads(rec["payload"])
        key = rec["key"]
        at = f"{topic}[{rec['partition']}]@{rec['offset']}"
        if "schema" in val:
            stats["wrapped"] += 1
            assert val["schema"]["name"] == topic + ".Envelope", f"{at}: value schema named {val['schema']['name']}"
            fits(val["schema"], val["payload"], at)
            ev = val["payload"]
            if key is not None:
                k = json.loads(key)
                assert k["schema"]["name"] == topic + ".Key", f"{at}: key schema {k['schema']['name']}"
                fits(k["schema"], k["payload"], at + " key")
                # the payload key's own bytes, as the producer hashed them
                key = key[key.rindex(',"payload":') + len(',"payload":'):-1]
                assert json.loads(key) == k["payload"]
        else:
            stats["bare"] += 1
            ev = val
        if ev["op"] == "t":
            continue
        want = zlib.crc32(key.encode()) % parts
        assert rec["partition"] == want, f"{at}: key {key} in partition {rec['partition']}, CRC32 says {want}"
        row = json.dumps(json.loads(key), sort_keys=True)
        where_of.setdefault(row, set()).add(rec["partition"])
    stats["rows"] += len(where_of)
    split = [k for k, p in where_of.items() if len(p) > 1]
    assert not split, f"{topic}: rows in several partitions: {split[:3]}"
print(stats["wrapped"], stats["bare"], stats["rows"])
PY
rc=$?
ok $rc "every record fits its schema and sits in its payload key's partition"
[ $rc -eq 0 ] || sed 's/^/#   /' "$T_DIR/check.out" >&2
read -r wrapped bare rows < <(tail -n 1 "$T_DIR/check.out")
ok "$([ "${wrapped:-0}" -ge 200 ] && [ "${bare:-0}" -ge 100 ]; echo $?)" \
    "both forms were checked: $wrapped records with schemas, $bare without, $rows rows"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

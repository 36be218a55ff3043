#!/usr/bin/env bash
# A Kafka Connect sink fed by pgrelay (issue 17): pgrelayd with
# cdc.schemas = true, a standalone Kafka Connect worker (scripts/connect)
# running Debezium's JDBC sink with JsonConverter (schemas.enable=true),
# and no code of pgrelay's on the consuming side.  employees and the
# every-type table of test 125 go to a third PostgreSQL database, c on B's
# server, and employees to MariaDB; snapshot, inserts, updates, deletes, a
# key change, a TRUNCATE followed by inserts, and an ADD COLUMN on the
# every-type table in the middle.  Each target is compared
# with A row by row, column by column, with exact row counts.
#
# The sink creates its tables (schema.evolution=basic); where a type
# arrives in another form, the comparison casts c's column back to A's type
# (c's type, from the event's Connect schema, on the right):
#   numeric, numeric(12,3)  text        compared as ::numeric (same digits)
#   interval                text (ISO-8601 "P1Y2M3DT4H5M6.789S")  ::interval
#   varchar(20), char(5)    text        char(5)'s padding arrives: ::char(5)
#   enum t_mood             text        its label
#   domain t_posint         integer
#   jsonb                   json        (its text form; ::jsonb)
#   numeric[]               text[]      ::numeric[]
#   json 'null'             json        NULL once an update carries it (the
#                           snapshot's insert keeps it): A's compared as NULL
#   real, double precision  real, double precision: but NaN, Infinity and
#                           -Infinity arrive as 0 (JsonConverter reads the
#                           strings "NaN"... of a float field as 0, with no
#                           error), and -0 as 0: A's are compared as 0 in c
# and what the sink cannot take at all stays out of the data:
#   time 24:00:00           the task dies: java.time.DateTimeException:
#                           Invalid value for NanoOfDay (valid values 0 -
#                           86399999999999): 86400000000000; 125's row has
#                           23:59:59.999999 here
#   date[]                  the task dies: ERROR: invalid input syntax for
#                           type date: "18321" (the sink binds the days);
#                           the column ad is excluded (cdc.tables exclude)
#   timestamptz ±infinity   the task dies when a batch holds it after a
#                           finite one: ERROR: column "tstz" is of type
#                           timestamp with time zone but expression is of
#                           type character varying (the sink writes
#                           cast(? as timestamptz) only for an infinite
#                           value, and takes a batch's statement from its
#                           first record); 125's rows hold 9999-12-31
#                           23:59:59.999999 and 0001-01-01 instead
# One partition per topic: a TRUNCATE is sent to every partition, and the
# sink, which has no notion of pgrelay's change order across partitions,
# would apply the TRUNCATE of one partition after later inserts read from
# another, and delete them.
# MariaDB, employees: int, longtext, date; compared as tab-separated text.
. "$(dirname "$0")/lib.sh"

CONNECT=$ROOT/scripts/connect
CNAME=t150-$$				# the workers: .stack/connect/$CNAME-pg, -mariadb
PORT0=${CONNECT_REST_PORT:-28084}	# their REST ports: this and the next
SECRETS=$T_DIR/connect-secrets.properties
DSN_C=${PGRELAY_TARGET_DSN/dbname=pgrelay/dbname=c}
DSN_B_POSTGRES=${PGRELAY_TARGET_DSN/dbname=pgrelay/dbname=postgres}
B_PORT=$(sed -E 's/.*port=([0-9]+).*/\1/' <<<"$PGRELAY_TARGET_DSN")
qc() { psql "$DSN_C" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qm() { mariadb --defaults-extra-file="$MARIADB_PASSWORD_FILE" -h 127.0.0.1 \
	-P "$MARIADB_PORT" -u "$MARIADB_USER" -N -B c150 -e "$1"; }

# The worker and MariaDB stop at the end, whatever happened; on success
# the worker's files go too (on failure its log is shown and kept).
connect_cleanup() {
	local w st
	for w in pg mariadb; do
		st=$ROOT/.stack/connect/$CNAME-$w
		"$CONNECT" stop "$CNAME-$w" >/dev/null 2>&1
		if [ "$T_FAILED" -ne 0 ] && [ -f "$st/connect.log" ]; then
			grep -E ' ERROR |^Caused by' "$st/connect.log" | sort -u -k3 |
			    tail -n 8 | cut -c1-300 | sed "s/^/#   connect $w: /" >&2
			echo "# the worker's files are in $st" >&2
		else
			rm -rf "$st"
		fi
	done
	"$CONNECT" mariadb stop >/dev/null 2>&1
}
trap 'connect_cleanup; cleanup' EXIT

"$CONNECT" setup > "$T_DIR/connect-setup.log" 2>&1
ok $? "scripts/connect setup: Java, MariaDB and the Connect jars are there" || exit 1
"$CONNECT" mariadb start > "$T_DIR/mariadb.log" 2>&1
ok $? "a private MariaDB runs" || exit 1
eval "$("$CONNECT" mariadb env)"

# ---- the tables: A's (employees and 125's every-type table), c fresh ----

DDL=$(types_ddl)
qa -c "$DDL" 2>/dev/null
ok $? "the every-type table on A"
psql "$DSN_B_POSTGRES" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS c" -c "CREATE DATABASE c" 2>/dev/null
ok $? "a fresh database c on B's server"
mariadb --defaults-extra-file="$MARIADB_PASSWORD_FILE" -h 127.0.0.1 -P "$MARIADB_PORT" \
    -u "$MARIADB_USER" -e "DROP DATABASE IF EXISTS c150; CREATE DATABASE c150"
ok $? "a fresh database c150 on MariaDB"

T_PARTITIONS=1 T_CONSUMERS=0 T_CONSUMERS_MIN=0	# Connect consumes, pgrelay's consumers do not
T_CDC_SCHEMAS=true
T_TABLES='{ source = "public.employees"; topic = "'"$T_TOPIC"'.emp"; },
{ source = "public.t_types"; topic = "'"$T_TOPIC"'.types"; exclude = [ "ad" ]; }'
CONF=$(write_config)
reset_pipeline >/dev/null

# ---- rows before pgrelay starts: the snapshot (op "r") ----

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'first' || i, CASE WHEN i % 10 = 0 THEN NULL ELSE 'lást ✓' || i END,
              DATE '1960-01-01' + i * 37, 'city' || (i % 17), 10001 + i
         FROM generate_series(1, 200) i"
# 125's extremes (time 24:00:00 and infinite timestamptz excepted, see
# above), then generated rows.
types_extremes '23:59:59.999999'
qa -c "UPDATE t_types SET tstz = CASE WHEN tstz = 'infinity' THEN TIMESTAMPTZ '9999-12-31 23:59:59.999999+00'
                                      ELSE TIMESTAMPTZ '0001-01-01 00:00:00+00' END
        WHERE tstz IN ('infinity', '-infinity')"
types_gen 1 200
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1'
is "$(running_count producer)" 1 "the snapshot is done and the producer streams"

# ---- the worker: one sink into c (both topics), one into MariaDB ----

PW=$(sed -n '1s/^[^:]*:[^:]*:[^:]*:[^:]*://p' "$PGRELAY_STACK_DIR/pgpass")
(umask 077 && printf 'pg.password=%s\nmariadb.password=%s\n' "$PW" "$PW" > "$SECRETS")
sink() {	# sink NAME TOPICS URL SECRET: a JDBC sink's properties
	cat <<-EOF
	name=$1
	connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
	tasks.max=1
	topics=$2
	connection.url=$3
	connection.username=pgrelay
	connection.password=\${file:$SECRETS:$4}
	insert.mode=upsert
	delete.enabled=true
	truncate.enabled=true
	primary.key.mode=record_key
	schema.evolution=basic
	collection.name.format=\${source.table}
	use.time.zone=UTC
	key.converter=org.apache.kafka.connect.json.JsonConverter
	key.converter.schemas.enable=true
	value.converter=org.apache.kafka.connect.json.JsonConverter
	value.converter.schemas.enable=true
	consumer.override.isolation.level=read_committed
	consumer.override.auto.offset.reset=earliest
	EOF
}
sink t150-pg "$T_TOPIC.emp,$T_TOPIC.types" \
    "jdbc:postgresql://127.0.0.1:$B_PORT/c" pg.password > "$T_DIR/sink-pg.properties"
sink t150-mariadb "$T_TOPIC.emp" \
    "jdbc:mariadb://127.0.0.1:$MARIADB_PORT/c150?nullDatabaseMeansCurrent=true" mariadb.password > "$T_DIR/sink-mariadb.properties"
# one worker each (see scripts/connect: one JVM, one target database)
CONNECT_REST_PORT=$PORT0 "$CONNECT" start "$CNAME-pg" "$T_DIR/sink-pg.properties" \
    > "$T_DIR/connect-start.log" 2>&1 &&
CONNECT_REST_PORT=$((PORT0 + 1)) "$CONNECT" start "$CNAME-mariadb" "$T_DIR/sink-mariadb.properties" \
    >> "$T_DIR/connect-start.log" 2>&1
ok $? "two Connect workers run the JDBC sinks" || { cat "$T_DIR/connect-start.log" >&2; exit 1; }

# sinks_running: both sinks' tasks RUNNING; else a TAP failure with the trace.
sinks_running() {
	local s
	s=$({ "$CONNECT" status "$CNAME-pg"; "$CONNECT" status "$CNAME-mariadb"; } 2>/dev/null | jq -s add)
	if jq -e '[.[] | .status.tasks[].state] | length == 2 and all(. == "RUNNING")' <<<"$s" >/dev/null 2>&1; then
		ok 0 "$1: both sink tasks RUNNING"
	else
		ok 1 "$1: a sink task is not RUNNING"
		jq -r '.[] | .status.tasks[] | select(.state != "RUNNING") | .trace' <<<"$s" 2>/dev/null |
		    grep -E '^[A-Za-z].*(Exception|Error)' | head -n 6 | sed 's/^/#   /' >&2
		return 1
	fi
}

# ---- streaming: inserts, updates, deletes, a key change, a TRUNCATE ----

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'new' || i, 'n' || i, DATE '2001-02-03' + i, NULL, 20000 + i FROM generate_series(1, 100) i;
       UPDATE employees SET city = 'Zürich', salary = salary * 2 WHERE emp_id % 3 = 0;
       DELETE FROM employees WHERE emp_id % 7 = 0;
       UPDATE employees SET emp_id = emp_id + 100000 WHERE emp_id % 11 = 0"
types_gen 201 300
qa -c "UPDATE t_types SET i4 = i4 + 1, num = num * 3, f8 = f8 / 3, t = t || 'u',
         ts = ts + INTERVAL '1 microsecond', tstz = tstz - INTERVAL '1 day',
         ai = ai || 9, j = '{\"u\": true}', mood = 'ok' WHERE i2 % 3 = 0"
qa -c "DELETE FROM t_types WHERE i2 % 7 = 0 AND i2 <> 32767"	# row 2 (-Infinity, -0) stays
qa -c "UPDATE t_types SET part = part + 100 WHERE i2 % 11 = 0;
       UPDATE t_types SET d = NULL, by = NULL, an = NULL WHERE i2 % 13 = 0"
# c holds the rows written so far: the TRUNCATE has rows to delete
wait_until 60 'test "$(qc -c "SELECT count(*) FROM employees WHERE first_name = '\''new100'\''" 2>/dev/null)" = 1'
qa -c "TRUNCATE employees"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'after' || i, 'truncate', DATE '2010-01-01' + i, 'c' || i, 30000 + i FROM generate_series(1, 150) i;
       UPDATE employees SET salary = salary + 1 WHERE emp_id % 2 = 0;
       DELETE FROM employees WHERE emp_id % 5 = 0;
       INSERT INTO employees (first_name, last_name, dob, city, salary)
       VALUES ('Ada', E'O''Brien ✓', '1815-12-10', 'London', 99999)"
types_gen 301 350
# ADD COLUMN in the middle: the events' schema follows (the sink adds the
# column, schema.evolution=basic); every row changes afterwards, so each
# carries it (a row the sink never hears of again keeps NULL there: the
# sink adds the column without A's DEFAULT)
qa -c "ALTER TABLE t_types ADD COLUMN extra text DEFAULT 'dflt'"
types_gen 351 360
qa -c "UPDATE t_types SET extra = 'e' || i2 WHERE i2 % 2 = 0;
       UPDATE t_types SET t = t WHERE i2 IS NULL OR i2 % 2 <> 0"
qa -c "INSERT INTO t_types (id, part, t) VALUES ('ffffffff-ffff-ffff-ffff-ffffffffffff', 0, 'last')"

wait_until 90 'test "$(qc -c "SELECT count(*) FROM t_types WHERE t = '\''last'\''" 2>/dev/null)" = 1 &&
    test "$(qc -c "SELECT count(*) FROM employees WHERE first_name = '\''Ada'\''" 2>/dev/null)" = 1 &&
    test "$(qm "SELECT count(*) FROM employees WHERE first_name = '\''Ada'\''" 2>/dev/null)" = 1'
sinks_running "after the last change"

# ---- c = A, column by column ----

# compare WHAT A-QUERY C-QUERY N: one TAP line; exactly N rows on A.
compare() {
	local what=$1 n
	qa -c "$2" > "$T_DIR/a.$what"
	$4 "$3" > "$T_DIR/c.$what" 2>&1
	n=$(wc -l < "$T_DIR/a.$what")
	if [ "$n" -ne "$5" ]; then
		ok 1 "$what: A holds $n rows, want exactly $5"
	elif cmp -s "$T_DIR/a.$what" "$T_DIR/c.$what"; then
		ok 0 "$what: the same $n rows, every column equal"
	else
		ok 1 "$what: A ($n rows) and the sink's table ($(wc -l < "$T_DIR/c.$what") rows) differ"
		diff "$T_DIR/a.$what" "$T_DIR/c.$what" | head -n 10 | sed 's/^/#   /' >&2
	fi
}
qcc() { qc -c "$1"; }
EMP="emp_id, first_name, last_name, dob, city, salary"
n_emp=$(qa -c "SELECT count(*) FROM employees")
n_types=$(qa -c "SELECT count(*) FROM t_types")
compare "employees in c" "SELECT ($EMP) FROM employees ORDER BY emp_id" \
    "SELECT ($EMP) FROM employees ORDER BY emp_id" qcc "$n_emp"
# one line a row: a newline in a value is written \n on both sides
rowtext() { echo "replace(ROW($1)::text, E'\\n', '\\n')"; }
is "$(qa -c "SELECT count(*) FROM employees WHERE last_name = 'truncate'")" 120 \
    "A holds the 120 rows written after its TRUNCATE (and c the same, above)"
# every column of t_types but ad, extra (added midway) too, c's cast back
# to A's type (see the top)
flt() { echo "CASE WHEN $1 IN ('NaN', 'Infinity', '-Infinity') OR $1 = 0 THEN 0 ELSE $1 END"; }
COLS_A="id, part, i2, i4, i8, num, num2, $(flt f4), $(flt f8), b, t, vc, ch, by, d, tm, ts,
  tstz, iv, u, nullif(j::text, 'null')::json, jb, ai, at, an, mood::text, dom::integer, extra"
COLS_C="id, part, i2, i4, i8, num::numeric, num2::numeric(12,3), f4, f8, b, t, vc::varchar(20),
  ch::char(5), by, d, tm, ts, tstz, iv::interval, u, j, jb::jsonb, ai, at, an::numeric[], mood, dom, extra"
compare "t_types in c" "SELECT $(rowtext "$COLS_A") FROM t_types ORDER BY id, part" \
    "SELECT $(rowtext "$COLS_C") FROM t_types ORDER BY id, part" qcc "$n_types"
is "$(qc -c "SELECT num FROM t_types WHERE id = '00000000-0000-0000-0000-000000000001'")" \
    "123456789012345678901234567890.123456789012345678901234567890" \
    "a numeric of 60 digits arrives digit for digit (as text)"
is "$(qa -c "SELECT f8 FROM t_types WHERE id = '00000000-0000-0000-0000-000000000001'")|$(
      qc -c "SELECT f8 FROM t_types WHERE id = '00000000-0000-0000-0000-000000000001'")" "NaN|0" \
    "a double precision NaN on A arrives as 0 in c (JsonConverter reads the string \"NaN\" as 0)"
is "$(qc -c "SELECT f4, f8 FROM t_types WHERE id = '00000000-0000-0000-0000-000000000002'")" "0|0" \
    "a real -Infinity arrives as 0, a double precision -0 as 0"
is "$(qc -c "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
              WHERE attrelid = 't_types'::regclass AND attname IN ('num', 'iv', 'jb', 'an', 'mood', 'tstz')
              ORDER BY attname")" "text[]
text
json
text
text
timestamp(6) with time zone" "the sink's column types for numeric[], timestamptz, jsonb, interval, enum, numeric"

# ---- MariaDB = A (employees) ----

# MariaDB prints NULL as NULL and escapes tab, newline and backslash
qmm() { qm "$1"; }
compare "employees in MariaDB" \
    "SELECT emp_id || E'\t' || coalesce(first_name, 'NULL') || E'\t' || coalesce(last_name, 'NULL')
            || E'\t' || coalesce(dob::text, 'NULL') || E'\t' || coalesce(city, 'NULL')
            || E'\t' || coalesce(salary::text, 'NULL') FROM employees ORDER BY emp_id" \
    "SELECT $EMP FROM employees ORDER BY emp_id" qmm "$n_emp"

stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

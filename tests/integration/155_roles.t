#!/usr/bin/env bash
# pgrelay on A as an unprivileged role, the tables owned by the
# application's role, as on a real installation (every other test runs as
# the stack's superuser):
#   - database a155 is owned by t155_relay (no superuser), which applies
#     sql/source/*.sql and so owns pgrelay_changes;
#   - app.employees belongs to t155_app, who has no right on pgrelay's
#     tables; t155_relay may only read it; t155_app's search_path puts its
#     schema app before pg_catalog, where it defines =, <> and to_json for
#     its rows and a type text, which raise an error when called: the
#     capture, which runs as t155_relay, must call none of them;
#   - pgrelayd cannot install the capture: the snapshot waits, and says so
#     in its log and in `pgrelayctl status`; an administrator (a superuser)
#     runs what `pgrelayctl capture-sql` prints; the pipeline goes on by
#     itself;
#   - the application's inserts, updates, key changes, deletes and a
#     TRUNCATE are captured (the capture runs as pgrelay's role, SECURITY
#     DEFINER: up to source version 4 every write of t155_app failed with
#     "permission denied for table pgrelay_changes", and its TRUNCATE did
#     not find pgrelay_changes on its search_path); B = A;
#   - the application still may not write pgrelay_changes itself;
#   - a second table whose owner grants TRIGGER to pgrelay's role, added by
#     a reload: pgrelay installs its capture itself (README, Database roles);
#   - on B the same: database b155 owned by t155_b (no superuser), which
#     applies sql/target/*.sql; B's tables belong to t155_bapp, which grants
#     t155_b SELECT, INSERT, UPDATE and DELETE, no more.
. "$(dirname "$0")/lib.sh"

A_PORT=$(sed -E 's/.*port=([0-9]+).*/\1/' <<<"$PGRELAY_SOURCE_DSN")
DSN_SU=${PGRELAY_SOURCE_DSN/dbname=pgrelay/dbname=a155}	# the stack's superuser
DSN_SU_POSTGRES=${PGRELAY_SOURCE_DSN/dbname=pgrelay/dbname=postgres}
B_PORT=$(sed -E 's/.*port=([0-9]+).*/\1/' <<<"$PGRELAY_TARGET_DSN")
DSN_B_SU=${PGRELAY_TARGET_DSN/dbname=pgrelay/dbname=b155}
DSN_B_SU_POSTGRES=${PGRELAY_TARGET_DSN/dbname=pgrelay/dbname=postgres}
PW_B=b-$$-$RANDOM
PASSFILE=$T_DIR/roles.pgpass
PW_RELAY=relay-$$-$RANDOM
PW_APP=app-$$-$RANDOM
(umask 077 && printf '127.0.0.1:%s:a155:t155_relay:%s\n127.0.0.1:%s:a155:t155_app:%s\n127.0.0.1:%s:b155:t155_b:%s\n' \
    "$A_PORT" "$PW_RELAY" "$A_PORT" "$PW_APP" "$B_PORT" "$PW_B" > "$PASSFILE")
DSN_B="host=127.0.0.1 port=$B_PORT dbname=b155 user=t155_b passfile=$PASSFILE sslmode=disable"
DSN_RELAY="host=127.0.0.1 port=$A_PORT dbname=a155 user=t155_relay passfile=$PASSFILE sslmode=disable"
DSN_APP="host=127.0.0.1 port=$A_PORT dbname=a155 user=t155_app passfile=$PASSFILE sslmode=disable"
qsu() { psql "$DSN_SU" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qapp() { psql "$DSN_APP" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
EMP="emp_id, first_name, last_name, dob, city, salary"
rows_app() { qsu -c "SELECT $EMP FROM app.employees ORDER BY emp_id"; }
qb() { psql "$DSN_B_SU" -X -q -At -v ON_ERROR_STOP=1 "$@"; }	# B is b155 here
drop_all() {
	psql "$DSN_SU_POSTGRES" -X -q -v ON_ERROR_STOP=1 \
	    -c "DROP DATABASE IF EXISTS a155 WITH (FORCE)" \
	    -c "DROP ROLE IF EXISTS t155_relay" -c "DROP ROLE IF EXISTS t155_app" 2>&1 &&
	psql "$DSN_B_SU_POSTGRES" -X -q -v ON_ERROR_STOP=1 \
	    -c "DROP DATABASE IF EXISTS b155 WITH (FORCE)" \
	    -c "DROP ROLE IF EXISTS t155_b" -c "DROP ROLE IF EXISTS t155_bapp" 2>&1
}
trap 'cleanup; [ "$T_FAILED" -ne 0 ] || drop_all >/dev/null' EXIT

# ---- the roles, the database, the application's table ----

drop_all > "$T_DIR/setup.log" &&
psql "$DSN_SU_POSTGRES" -X -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE t155_relay LOGIN PASSWORD '$PW_RELAY'" \
    -c "CREATE ROLE t155_app LOGIN PASSWORD '$PW_APP'" \
    -c "CREATE DATABASE a155 OWNER t155_relay" >> "$T_DIR/setup.log" 2>&1 &&
qsu -c "REVOKE ALL ON DATABASE a155 FROM PUBLIC;
        GRANT CONNECT ON DATABASE a155 TO t155_app;
        CREATE SCHEMA app AUTHORIZATION t155_app;
        ALTER ROLE t155_app IN DATABASE a155 SET search_path = app, pg_catalog" >> "$T_DIR/setup.log" 2>&1
ok $? "roles t155_relay (owns database a155) and t155_app (owns schema app), neither a superuser"
for f in "$ROOT"/sql/source/*.sql; do
	psql "$DSN_RELAY" -X -q -v ON_ERROR_STOP=1 -f "$f" >> "$T_DIR/setup.log" 2>&1 || break
done
ok $? "t155_relay applies sql/source/*.sql: it owns pgrelay_changes"
is "$(qsu -c "SELECT relowner::regrole FROM pg_class WHERE oid = 'public.pgrelay_changes'::regclass")|$(
      qsu -c "SELECT proowner::regrole, prosecdef, proconfig FROM pg_proc WHERE proname = 'pgrelay_capture_truncate'")" \
    't155_relay|t155_relay|t|' \
    "the TRUNCATE capture runs as pgrelay's role (SECURITY DEFINER)"
qapp -c "CREATE TABLE employees (
           emp_id serial PRIMARY KEY, first_name varchar(100), last_name varchar(100),
           dob date, city varchar(100), salary int);
         GRANT USAGE ON SCHEMA app TO t155_relay;
         GRANT SELECT ON employees TO t155_relay;
         INSERT INTO employees (first_name, last_name, dob, city, salary)
         SELECT 'first' || i, 'last' || i, DATE '2007-01-01' + i, 'city' || (i % 7), 10001 + i
           FROM generate_series(1, 300) i" >> "$T_DIR/setup.log" 2>&1
ok $? "t155_app's table app.employees, 300 rows; t155_relay may read it"
qapp -c "CREATE FUNCTION shadow(text, text) RETURNS boolean LANGUAGE plpgsql AS
           \$\$BEGIN RAISE EXCEPTION 'app.= or app.<> ran as %', current_user; END\$\$;
         CREATE OPERATOR = (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow);
         CREATE OPERATOR <> (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow);
         CREATE FUNCTION to_json(employees) RETURNS json LANGUAGE plpgsql AS
           \$\$BEGIN RAISE EXCEPTION 'app.to_json ran as %', current_user; END\$\$;
         CREATE TYPE text AS ENUM ('shadow')" >> "$T_DIR/setup.log" 2>&1
ok $? "t155_app's schema app shadows =, <> and to_json (employees), and has a type text"
is "$(qapp -c "SELECT 'a'::pg_catalog.text = 'a'::pg_catalog.text" 2>&1 | grep -o 'app.= or app.<> ran as t155_app')" \
    "app.= or app.<> ran as t155_app" "t155_app's own = on text is its shadow"
qapp -c "SELECT count(*) FROM public.pgrelay_changes" >/dev/null 2>&1
ok $((! $?)) "t155_app may not read pgrelay_changes"

# B: t155_b owns b155 and pgrelay's tables there, t155_bapp the targets
B_TABLE="CREATE TABLE %s; ALTER TABLE %s OWNER TO t155_bapp;
         GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO t155_b;"
b_table() { qb -c "$(printf "$B_TABLE" "$1" "${1%% *}" "${1%% *}")"; }
psql "$DSN_B_SU_POSTGRES" -X -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE t155_b LOGIN PASSWORD '$PW_B'" -c "CREATE ROLE t155_bapp" \
    -c "CREATE DATABASE b155 OWNER t155_b" >> "$T_DIR/setup.log" 2>&1 &&
b_table "employees (emp_id int PRIMARY KEY, first_name varchar(100), last_name varchar(100),
           dob date, city varchar(100), salary int)" >> "$T_DIR/setup.log" 2>&1 &&
b_table "t155_items (id bigint PRIMARY KEY, label text)" >> "$T_DIR/setup.log" 2>&1
ok $? "on B: t155_b owns database b155, t155_bapp its employees and t155_items (t155_b may read and write their rows)"
for f in "$ROOT"/sql/target/*.sql; do
	psql "$DSN_B" -X -q -v ON_ERROR_STOP=1 -f "$f" >> "$T_DIR/setup.log" 2>&1 || break
done
ok $? "t155_b applies sql/target/*.sql"

# ---- pgrelayd as t155_relay: the capture waits for an administrator ----

export PGRELAY_SOURCE_DSN=$DSN_RELAY	# what pgrelayd and pgrelayctl use (qa no more)
export PGRELAY_TARGET_DSN=$DSN_B
T_PARTITIONS=2 T_CONSUMERS=1
T_TABLES='{ source = "app.employees"; target = "public.employees"; topic = "'"$T_TOPIC"'"; }'
CONF=$(write_config)
start_worker sup pgrelayd -c "$CONF"
wait_until 30 'grep -q "an administrator runs the SQL .pgrelayctl -c CONFIG capture-sql. prints" "$T_DIR/sup.log"'
ok $? "the snapshot cannot install the capture and says what an administrator runs"
grep -m 1 "capture-sql" "$T_DIR/sup.log" | sed 's/^/#   /' >&2
wait_until 10 'sup_status | grep -q "^snapshot.*state=waiting error=installing the capture of app.employees.*capture-sql"'
ok $? "pgrelayctl status shows the snapshot waiting, and why"
sup_status | grep "^snapshot" | cut -c1-200 | sed 's/^/#   /' >&2
is "$(running_count producer)|$(qb -c "SELECT count(*) FROM employees")" "0|0" \
    "meanwhile no producer runs and B is empty"
is "$(qsu -c "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.employees'::regclass")" 0 \
    "and A's table has no trigger"

"$BIN/pgrelayctl" -c "$CONF" capture-sql > "$T_DIR/capture.sql" 2> "$T_DIR/capture-sql.log"
ok $? "pgrelayctl capture-sql, run with t155_relay's DSN, prints the script"
psql "$DSN_SU" -X -q -v ON_ERROR_STOP=1 -f "$T_DIR/capture.sql" > "$T_DIR/capture-run.log" 2>&1
ok $? "an administrator (a superuser) runs it" || cat "$T_DIR/capture-run.log" >&2
is "$(qsu -c "SELECT p.proowner::regrole, p.prosecdef FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
              WHERE t.tgrelid = 'app.employees'::regclass ORDER BY t.tgname")" \
    "t155_relay|t
t155_relay|t" "both triggers' functions belong to t155_relay and run as it (SECURITY DEFINER)"

wait_until 60 'test "$(running_count producer)" = 1 && [ "$(rows_app)" = "$(rows_b)" ]'
is "$(rows_b | wc -l)" 300 "without a restart the snapshot copies the 300 rows and the producer streams"
[ "$(rows_app)" = "$(rows_b)" ]
ok $? "B = A after the snapshot"

# ---- the application writes, as itself ----

qapp -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
           SELECT 'new' || i, 'n', DATE '2008-01-01' + i, 'x', 20000 + i FROM generate_series(1, 50) i" \
    > "$T_DIR/app.log" 2>&1
ok $? "t155_app inserts into its table (no right on pgrelay_changes; its shadows on its search_path)" ||
    sed 's/^/#   /' "$T_DIR/app.log" >&2
qapp -c "UPDATE employees SET city = 'Lyon', salary = salary + 5 WHERE emp_id % 3 = 0;
         UPDATE employees SET emp_id = emp_id + 10000 WHERE emp_id % 10 = 0;
         DELETE FROM employees WHERE emp_id % 7 = 0" >> "$T_DIR/app.log" 2>&1
ok $? "t155_app updates, changes keys and deletes" || sed 's/^/#   /' "$T_DIR/app.log" >&2
wait_until 30 '[ "$(rows_app)" = "$(rows_b)" ]'
ok $? "B = A after the application's changes ($(rows_app | wc -l) rows)"
qapp -c "BEGIN; TRUNCATE employees;
         INSERT INTO employees (first_name, last_name, dob, city, salary)
           VALUES ('after', 'truncate', '2010-01-01', 'y', 30000); COMMIT" >> "$T_DIR/app.log" 2>&1
ok $? "t155_app truncates its table and inserts a row" || sed 's/^/#   /' "$T_DIR/app.log" >&2
wait_until 30 '[ "$(rows_app)" = "$(rows_b)" ]'
is "$(rows_b)" "$(rows_app)" "B = A after the TRUNCATE (one row)"
qapp -c "INSERT INTO public.pgrelay_changes (rel, action) VALUES (1, 't')" >/dev/null 2>&1
ok $((! $?)) "t155_app still may not write pgrelay_changes itself"

# ---- a table whose owner grants TRIGGER: pgrelay installs it itself ----

qapp -c "CREATE TABLE t155_items (id bigint PRIMARY KEY, label pg_catalog.text);
         GRANT SELECT, TRIGGER ON t155_items TO t155_relay;
         INSERT INTO t155_items SELECT i, 'item ' || i FROM generate_series(1, 20) i" >> "$T_DIR/app.log" 2>&1
ok $? "t155_app's second table, SELECT and TRIGGER granted to t155_relay"
T_TABLES='{ source = "app.employees"; target = "public.employees"; topic = "'"$T_TOPIC"'"; },
{ source = "app.t155_items"; target = "public.t155_items"; topic = "'"$T_TOPIC"'.items"; }'
write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 60 'grep -q "installed the capture of app.t155_items" "$T_DIR/sup.log" &&
    test "$(qb -c "SELECT count(*) FROM t155_items" 2>/dev/null)" = 20'
ok $? "after a reload pgrelay installs the capture of app.t155_items itself and copies its 20 rows"
qapp -c "UPDATE t155_items SET label = label || '!' WHERE id % 2 = 0;
         DELETE FROM t155_items WHERE id = 5;
         INSERT INTO t155_items VALUES (21, 'twenty-one')" >> "$T_DIR/app.log" 2>&1
ok $? "t155_app writes it"
items_a() { qsu -c "SELECT id, label FROM app.t155_items ORDER BY id"; }
wait_until 30 '[ "$(items_a)" = "$(qb -c "SELECT id, label FROM t155_items ORDER BY id")" ]'
ok $? "B = A for app.t155_items"
is "$(qsu -c "SELECT p.proowner::regrole, p.prosecdef FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
              WHERE t.tgrelid = 'app.t155_items'::regclass AND t.tgname = 'pgrelay_capture'")" \
    "t155_relay|t" "its capture belongs to t155_relay"

is "$(qb -c "SELECT tableowner FROM pg_tables WHERE tablename IN ('employees', 't155_items') ORDER BY 1")|$(
      qb -c "SELECT count(*) FROM pgrelay_targets")" "t155_bapp
t155_bapp|2" "B's tables are still t155_bapp's, and registered"

stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

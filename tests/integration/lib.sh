# lib.sh - shared helpers for the integration tests (bash, TAP output).
#
# Sourced by tests/integration/*.t.  Needs the local stack (scripts/stack up);
# takes the brokers and DSNs from `scripts/stack env` unless they are set.
# Every test gets its own topics and consumer group (named after the test
# and its pid) and resets the pipeline's tables on A and B first, so tests
# run in any order.  Workers started with start_worker are killed on exit.

set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PGRELAY_BIN:-$ROOT/build}
if [ -z "${PGRELAY_SOURCE_DSN:-}" ]; then
	eval "$("$ROOT/scripts/stack" env)"
fi
PGRELAY_KAFKA_LIBS=${PGRELAY_KAFKA_LIBS:-$ROOT/.cache/kafka/libs}
export PGRELAY_KAFKA_BROKERS PGRELAY_SOURCE_DSN PGRELAY_TARGET_DSN PGRELAY_KAFKA_LIBS
# The sanitizer build: abort loudly on any finding, no leak noise from exit().
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

T_NAME=$(basename "$0" .t)
T_DIR=$(mktemp -d "/tmp/pgrelay-$T_NAME.XXXXXX")
T_TOPIC="t.$T_NAME.$$"
T_DLQ="t.$T_NAME.$$.dlq"
T_GROUP="t-$T_NAME-$$"
mkdir -p "$T_DIR/spool"
T_N=0
T_FAILED=0
declare -A T_PIDS=()
T_VICTIMS=()	# pids of pgrelayd's children this test killed (kill_child)
T_SEED=		# a randomized test's seed, printed on failure to replay it

ok() {		# ok CONDITION-EXIT-CODE DESCRIPTION
	local rc=$1; shift
	T_N=$((T_N + 1))
	if [ "$rc" -eq 0 ]; then
		echo "ok $T_N - $*"
	else
		echo "not ok $T_N - $*"
		echo "#   Failed test $T_N: $*" >&2
		T_FAILED=$((T_FAILED + 1))
	fi
	return "$rc"
}

is() {		# is GOT WANT DESCRIPTION
	local got=$1 want=$2; shift 2
	if [ "$got" = "$want" ]; then
		ok 0 "$*"
	else
		ok 1 "$*"
		echo "#   got:      '$got'" >&2
		echo "#   expected: '$want'" >&2
		return 1
	fi
}

# diag MESSAGE: a comment on stderr, where prove shows it (as Test::More's)
diag() { echo "# $*" >&2; }

done_testing() {
	check_logs
	echo "1..$T_N"
	[ "$T_FAILED" -eq 0 ]
}

qa() { psql "$PGRELAY_SOURCE_DSN" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qb() { psql "$PGRELAY_TARGET_DSN" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

# write_config [FILE]: this test's config (default $T_DIR/pgrelay.conf).
# T_BROKERS, T_SOURCE_DSN and T_TARGET_DSN put the brokers and DSNs in the
# file (by default the environment's apply); T_KAFKA_PROPERTIES is the body
# of kafka.properties, one ("name", "value") pair per line; T_TABLES the
# body of cdc.tables (by default none: the employees table on $T_TOPIC).
write_config() {
	local f=${1:-$T_DIR/pgrelay.conf}
	cat > "$f" <<CONF
log = { level = "${T_LOG_LEVEL:-info}"; };
kafka = {
  brokers = "${T_BROKERS:-$PGRELAY_KAFKA_BROKERS}";
  cdc_topic = "$T_TOPIC";
  dlq_topic = "$T_DLQ";
  partitions = ${T_PARTITIONS:-4};
  group_id = "$T_GROUP";${T_KAFKA_PROPERTIES:+
  properties = (
$T_KAFKA_PROPERTIES
  );}
};
source = { dsn = "${T_SOURCE_DSN:-set by PGRELAY_SOURCE_DSN}"; };${T_TABLES:+
cdc = { tables = (
$T_TABLES
);${T_CDC_SCHEMAS:+ schemas = $T_CDC_SCHEMAS;} \};}
target = { dsn = "${T_TARGET_DSN:-set by PGRELAY_TARGET_DSN}"; };
producer = { poll_interval_ms = 10; batch_size = ${T_PRODUCER_BATCH:-5000}; retention_s = 3600; };
snapshot = { batch_size = ${T_SNAPSHOT_BATCH:-10000}; };
consumer = { batch_size = ${T_CONSUMER_BATCH:-500}; batch_timeout_ms = 20; count = ${T_CONSUMERS:-1}; min = ${T_CONSUMERS_MIN:-0}; max = ${T_PARTITIONS:-4};${T_EVOLUTION:+ schema_evolution = \"$T_EVOLUTION\";} };
supervisor = {
  runtime_dir = "$T_DIR/run";
  watchdog_s = ${T_WATCHDOG:-5};
  drain_timeout_s = 15;
  restart_intensity = ${T_INTENSITY:-50};
  restart_period_s = 30;
  backoff_initial_ms = ${T_BACKOFF:-200};
  backoff_max_ms = 2000;
  status_interval_s = 1;
};
etl = {
  enabled = ${T_ETL:-false};
  spool_dir = "$T_DIR/spool";
  topic = "$T_TOPIC.etl";
  dlq_topic = "$T_TOPIC.etl.dlq";
  group_id = "$T_GROUP-etl";
  partitions = 3;
  batch_size = ${T_ETL_BATCH:-1000};
  loader_count = ${T_LOADERS:-1};
};
CONF
	echo "$f"
}

# Empties A's and B's pipeline tables.  A's TRUNCATE of employees is
# recorded in pgrelay_changes (action 't'): it is emptied after it, in the
# same transaction, so no one sees that record.
reset_pipeline() {
	qa -c "TRUNCATE employees RESTART IDENTITY;
	       TRUNCATE pgrelay_changes, pgrelay_producer_state, pgrelay_snapshot_state RESTART IDENTITY" &&
	qb -c "TRUNCATE employees, pgrelay_row_version, pgrelay_offsets, pgrelay_truncate_horizon RESTART IDENTITY;
	        UPDATE pgrelay_targets SET horizon = 0, truncated_at = NULL WHERE target = 'employees'::regclass"
}

# start_worker NAME KIND [args...]: runs $BIN/pgrelay-KIND (or $BIN/KIND
# for pgrelayd) in the background, its output in $T_DIR/NAME.log.
start_worker() {
	local name=$1 kind=$2 prog; shift 2
	case $kind in pgrelay*) prog=$BIN/$kind ;; *) prog=$BIN/pgrelay-$kind ;; esac
	: >> "$T_DIR/$name.log"		# exists before anyone greps it
	"$prog" "$@" >> "$T_DIR/$name.log" 2>&1 &
	T_PIDS[$name]=$!
}

stop_worker() {		# stop_worker NAME [SIGNAL]
	local name=$1 sig=${2:-TERM} pid=${T_PIDS[$1]:-}
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local rc=$?
	unset "T_PIDS[$name]"
	return $rc
}

cleanup() {
	for name in "${!T_PIDS[@]}"; do
		kill -KILL "${T_PIDS[$name]}" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$T_FAILED" -ne 0 ] || [ -n "${T_KEEP:-}" ]; then
		[ -z "$T_SEED" ] || echo "# seed: $T_SEED (set it again to replay)" >&2
		[ ${#T_VICTIMS[@]} -eq 0 ] || echo "# killed: ${T_VICTIMS[*]}" >&2
		for f in "$T_DIR"/*.log; do
			[ -f "$f" ] || continue
			echo "# --- $f (last 30 lines)"
			tail -n 30 "$f" | sed 's/^/#   /' >&2
		done >&2
		echo "# logs kept in $T_DIR" >&2
	else
		rm -rf "$T_DIR"
	fi
}
trap cleanup EXIT

# sup_status [--json]: pgrelayctl against this test's supervisor (its
# stderr kept in a log, which check_logs reads).
sup_status() {
	"$BIN/pgrelayctl" -s "$T_DIR/run/pgrelayd.sock" status "$@" 2>> "$T_DIR/pgrelayctl.log"
}

# Pids of the running children of one kind, from pgrelayctl's JSON.
child_pids() {
	sup_status --json | jq -r --arg k "$1" \
	    '.children[] | select(.kind == $k and .state == "running") | .pid'
}
running_count() { child_pids "$1" | grep -c .; }

# Members of the consumer group, as the broker sees them.
group_members() {
	java -Xmx128m -cp "$PGRELAY_KAFKA_LIBS/*" \
	    org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
	    --bootstrap-server "$PGRELAY_KAFKA_BROKERS" --describe --members \
	    --group "$T_GROUP" 2>/dev/null | grep -c "pgrelay-consumer-"
}

# kafka_topic ARGS...: Kafka's own TopicCommand against the local broker
# (--create --topic T --partitions N, --alter --topic T --config K=V, ...).
kafka_topic() {
	java -Xmx128m -cp "$PGRELAY_KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
	    --bootstrap-server "$PGRELAY_KAFKA_BROKERS" "$@" 2>&1 | grep -v "^SLF4J"
}

# The rows of employees, one per line, in key order.
rows_a() { qa -c "SELECT emp_id, first_name, last_name, dob, city, salary FROM employees ${1:-} ORDER BY emp_id"; }
rows_b() { qb -c "SELECT emp_id, first_name, last_name, dob, city, salary FROM employees ORDER BY emp_id"; }

# compare_table WHAT TABLE ORDER: one TAP line.  A and B hold the same
# rows of TABLE, each compared whole (its text form: every column), in
# ORDER; any table, any types.
compare_table() {
	local what=$1 table=$2 order=$3 n
	if ! qa -c "SELECT t::text FROM $table t ORDER BY $order" > "$T_DIR/a.$table" ||
	   ! qb -c "SELECT t::text FROM $table t ORDER BY $order" > "$T_DIR/b.$table"; then
		ok 1 "$what: $table could not be read on A or B (the error is above)"
		return 1
	fi
	n=$(wc -l < "$T_DIR/a.$table")
	if [ "$n" -eq 0 ]; then
		ok 1 "$what: A holds no row of $table: nothing to compare"
		return 1
	elif cmp -s "$T_DIR/a.$table" "$T_DIR/b.$table"; then
		ok 0 "$what: A and B hold the same $n rows of $table, every column equal"
	else
		ok 1 "$what: $table differs between A ($n rows) and B ($(wc -l < "$T_DIR/b.$table"))"
		diff "$T_DIR/a.$table" "$T_DIR/b.$table" | head -n 10 | sed 's/^/#   /' >&2
		return 1
	fi
}

# The every-type table (tests 125, 150): types_ddl prints its DDL (an
# enum, a domain, every type of README's type table, a composite key),
# types_extremes TIME its four rows of extremes and NULLs on A (TIME: the
# first row's time, 24:00:00 where the sink can take it), types_gen FROM
# TO its generated rows on A.
types_ddl() {
	echo "DROP TABLE IF EXISTS t_types;
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
  PRIMARY KEY (id, part));"
}
types_extremes() {
	qa -c "INSERT INTO t_types VALUES
	 ('00000000-0000-0000-0000-000000000001', 1, -32768, -2147483648, -9223372036854775808,
	  '123456789012345678901234567890.123456789012345678901234567890', 1.5,
	  3.4028235e38, 'NaN', true, E'tab\there \"quote\" \\\\ é ✓ \\n newline', 'vc', 'ab',
	  '\\x00ff10', '2007-01-01', '$1', '1999-12-31 23:59:59.999999', 'infinity',
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
}
types_gen() {
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
}

# The rows of A that pass the default rules: what B must hold.
VALID="WHERE emp_id >= 0 AND dob >= DATE '2007-01-01' AND salary > 10000"

# wait_until SECONDS 'SHELL CODE': evaluates the code (quoted, so that it is
# expanded anew each time) every 0.2 s until it succeeds or time runs out.
wait_until() {
	local limit=$1; shift
	local end=$((SECONDS + limit))
	while [ $SECONDS -lt $end ]; do
		eval "$*" && return 0
		sleep 0.2
	done
	eval "$*"
}

same_rows() { [ "$(rows_a "${1:-}")" = "$(rows_b)" ]; }

# compare_ab WHAT ROWS [FILTER]: one TAP line; on failure, the first
# differences.  ROWS is the least number of rows A must hold, or =N for
# exactly N: two empty tables are equal, and prove nothing.
compare_ab() {
	local what=$1 want=$2 filter=${3:-} n
	rows_a "$filter" > "$T_DIR/a.rows"
	rows_b > "$T_DIR/b.rows"
	n=$(wc -l < "$T_DIR/a.rows")
	case $want in
	=*)	if [ "$n" -ne "${want#=}" ]; then
			ok 1 "$what: A holds $n rows, want exactly ${want#=}"
			return 1
		fi ;;
	*)	if [ "$n" -lt "$want" ]; then
			ok 1 "$what: A holds $n rows, want at least $want"
			return 1
		fi ;;
	esac
	if cmp -s "$T_DIR/a.rows" "$T_DIR/b.rows"; then
		ok 0 "$what: A and B hold the same $n rows"
	else
		ok 1 "$what: A ($(wc -l < "$T_DIR/a.rows") rows) and B ($(wc -l < "$T_DIR/b.rows") rows) differ"
		diff "$T_DIR/a.rows" "$T_DIR/b.rows" | head -n 10 | sed 's/^/#   /' >&2
		return 1
	fi
}

# The DLQ topic's messages as "rule|reason|key" lines (kcat, headers).
dlq_lines() {
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_DLQ" -o beginning -e -q \
	    -f '%h|%k\n' 2>/dev/null
}

# load_a SECONDS WRITER-ID: a writer of inserts, updates and deletes on A,
# for about SECONDS; every row it writes is valid under the default rules.
# psql's errors are kept in $T_DIR/load-WRITER-ID.err for load_errors.
load_a() {
	local secs=$1 w=$2
	local end=$((SECONDS + secs))
	while [ $SECONDS -lt $end ]; do
		for i in $(seq 1 50); do
			echo "BEGIN;
INSERT INTO employees (first_name, last_name, dob, city, salary)
  VALUES ('w$w', 'n$i', DATE '2007-01-01' + (random() * 5000)::int, 'c$i', 10001 + (random() * 90000)::int);
UPDATE employees SET salary = salary + 1, city = 'u$w'
  WHERE emp_id = (SELECT (random() * max(emp_id))::int FROM employees);
DELETE FROM employees WHERE emp_id = (SELECT (random() * max(emp_id))::int FROM employees) AND random() < 0.3;
COMMIT;"
		done
	done | psql "$PGRELAY_SOURCE_DSN" -X -q -v ON_ERROR_STOP=0 >/dev/null 2>> "$T_DIR/load-$w.err"
}

# load_errors ALLOWED: one TAP line: every error psql reported to the
# writers of load_a matches the extended regex ALLOWED (two writers can
# deadlock, and the rest of a transaction the server rolled back is
# refused), so a load that only failed cannot pass for one that wrote.
load_errors() {
	local allowed=$1 bad
	# psql's messages, without their DETAIL, HINT, CONTEXT and LINE parts
	# (a CONTEXT of an error raised inside a trigger, as A stops, goes on
	# over lines of its own: "PL/pgSQL function pgrelay_capture_1() line
	# 11 at SQL statement")
	cat "$T_DIR"/load-*.err 2>/dev/null |
	    grep -vE '^(DETAIL|HINT|CONTEXT|QUERY|LINE [0-9]+):|^[[:space:]]|^(PL/pgSQL|SQL) (function|statement) ' \
	    > "$T_DIR/load.errors"
	bad=$(grep -vE "$allowed" "$T_DIR/load.errors")
	if [ -z "$bad" ]; then
		ok 0 "the load's errors are of the expected kinds only ($(wc -l < "$T_DIR/load.errors") in all)"
	else
		ok 1 "the load had unexpected errors"
		echo "$bad" | sort | uniq -c | sort -rn | head -n 5 | sed 's/^/#   /' >&2
		return 1
	fi
}
LOAD_DEADLOCKS='ERROR:  (deadlock detected|current transaction is aborted)'

# The newest change_id on A (0 if none): changes_since takes it as a start.
last_change() { qa -c "SELECT coalesce(max(change_id), 0) FROM pgrelay_changes"; }
changes_since() { qa -c "SELECT count(*) FROM pgrelay_changes WHERE change_id > $1"; }

# versions_match WHAT: one TAP line.  B's version of every row
# (pgrelay_row_version: change_id and deleted) equals A's newest change of
# that row: a change lost, applied twice out of order, or a deleted row
# that came back shows here even where the rows themselves agree.  A
# TRUNCATE on A (action 't') is B's truncate horizon: the rows compared
# are those A changed after its last TRUNCATE, B's horizon must be that
# TRUNCATE, and B must keep no version below it.
versions_match() {
	local last horizon below
	local emp="rel = (SELECT id FROM pgrelay_tables WHERE relid = 'employees'::regclass)"
	last=$(qa -c "SELECT coalesce(max(change_id), 0) FROM pgrelay_changes WHERE action = 't' AND $emp")
	horizon=$(qb -c "SELECT horizon FROM pgrelay_targets WHERE target = 'employees'::regclass")
	below=$(qb -c "SELECT count(*) FROM pgrelay_row_version WHERE change_id < $horizon")
	qa -c "SELECT DISTINCT ON (key::int) key::int, change_id, action = 'd'
	         FROM pgrelay_changes WHERE action <> 't' AND change_id > $last AND $emp
	        ORDER BY key::int, change_id DESC" > "$T_DIR/a.versions"
	qb -c "SELECT emp_id, change_id, deleted FROM pgrelay_row_version
	        WHERE change_id > $horizon ORDER BY emp_id" > "$T_DIR/b.versions"
	if [ "$horizon" != "$last" ] || [ "$below" -ne 0 ]; then
		ok 1 "$1: B's truncate horizon is $horizon with $below row versions below it; A's last TRUNCATE is $last"
		return 1
	fi
	if cmp -s "$T_DIR/a.versions" "$T_DIR/b.versions"; then
		ok 0 "$1: B's version of each of $(wc -l < "$T_DIR/a.versions") rows is A's newest change"
	else
		ok 1 "$1: B's row versions differ from A's newest changes"
		diff "$T_DIR/a.versions" "$T_DIR/b.versions" | head -n 10 | sed 's/^/#   /' >&2
		return 1
	fi
}

# topic_complete WHAT once|at-least-once MIN: one TAP line.  Every change
# A captured after the snapshot's cut (what the stream must carry) is on
# the CDC topic, once or at least once (a TRUNCATE once per partition), there are at least MIN of them, and
# the topic carries no change A does not have.  Checked at the topic, where
# a later change of a row cannot hide a lost earlier one, and read as the
# consumers read it (read_committed): a change that is only in an aborted
# transaction is not on it.
topic_complete() {
	local what=$1 mode=$2 min=$3 n missing extra twice
	qa -c "SELECT change_id FROM pgrelay_changes WHERE NOT pg_visible_in_snapshot(txid,
	         (SELECT cut FROM pgrelay_snapshot_state))" | sort > "$T_DIR/want.ids"
	# a TRUNCATE (op "t") is on every partition: counted on partition 0;
	# read as consumers read it (aborted transactions left out)
	kcat -b "$PGRELAY_KAFKA_BROKERS" -X isolation.level=read_committed \
	    -C -t "$T_TOPIC" -o beginning -e -q \
	    -f '%p %s\n' 2>/dev/null | sed -E 's/^([0-9]+) (.*)$/{"p":\1,"v":\2}/' |
	    jq -r 'select(.v | type == "object" and .op != "r") |
	           select(.v.op != "t" or .p == 0) | .v.source.change_id' |
	    sort > "$T_DIR/topic.ids"
	n=$(wc -l < "$T_DIR/want.ids")
	missing=$(sort -u "$T_DIR/topic.ids" | comm -23 "$T_DIR/want.ids" - | wc -l)
	extra=$(sort -u "$T_DIR/topic.ids" | comm -13 "$T_DIR/want.ids" - | wc -l)
	twice=$(uniq -d "$T_DIR/topic.ids" | wc -l)
	if [ "$n" -ge "$min" ] && [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ] &&
	   { [ "$mode" != once ] || [ "$twice" -eq 0 ]; }; then
		ok 0 "$what: the topic carries each of A's $n changes $mode ($twice more than once)"
	else
		ok 1 "$what: A has $n changes (want at least $min); the topic misses $missing, has $extra A does not, $twice more than once (want $mode)"
		sort -u "$T_DIR/topic.ids" | comm -23 "$T_DIR/want.ids" - | head -n 5 | sed 's/^/#   missing change_id /' >&2
		return 1
	fi
}

# kill_child PID: kill -9 of one of pgrelayd's children, recorded as a
# victim; check_logs then requires pgrelayd's log to show that pid killed
# by signal 9, so a kill that hit an already ended process fails the test.
kill_child() {
	T_VICTIMS+=("$1")
	kill -9 "$1"
}

# check_logs: two TAP lines, at the end of every test (done_testing).
# No file of the run holds a sanitizer report (the workers are the
# ASan+UBSan build; one that aborts is restarted by pgrelayd like any crash
# and would go unseen), and every child pgrelayd saw die by a signal was
# killed by the test (kill_child) or by pgrelayd itself (hung, or not
# stopping in time), and every kill_child victim did die by signal 9.
check_logs() {
	local found pid bad=
	found=$(grep -rlE 'AddressSanitizer|LeakSanitizer|runtime error:' \
	    --exclude-dir=spool "$T_DIR" 2>/dev/null)
	if [ -z "$found" ]; then
		ok 0 "no sanitizer report in any log of the run"
	else
		ok 1 "sanitizer reports in: $(echo $found)"
		grep -rhE -A3 'AddressSanitizer|LeakSanitizer|runtime error:' $found |
		    head -n 12 | sed 's/^/#   /' >&2
	fi
	for pid in $(grep -rhoE '\(pid [0-9]+\) was killed by signal [0-9]+' \
	    --exclude-dir=spool "$T_DIR" 2>/dev/null | awk '{print $2}' | tr -d ')'); do
		case " ${T_VICTIMS[*]} " in *" $pid "*) continue ;; esac
		grep -rqE "\(pid $pid\) (sent no keep-alive|did not stop within)" \
		    --exclude-dir=spool "$T_DIR" && continue
		bad="$bad $pid"
	done
	for pid in "${T_VICTIMS[@]}"; do
		grep -rqF "(pid $pid) was killed by signal 9" --exclude-dir=spool "$T_DIR" ||
		    bad="$bad $pid(missed)"
	done
	if [ -z "$bad" ]; then
		ok 0 "every child that died by a signal was killed on purpose; every kill hit (${#T_VICTIMS[@]} kills)"
	else
		ok 1 "children died by a signal no one sent, or kills hit nothing:$bad"
		for pid in $bad; do
			grep -rhE "pid ${pid%(missed)}\b|\[${pid%(missed)}\]" \
			    --exclude-dir=spool "$T_DIR" | head -n 4 | sed 's/^/#   /' >&2
		done
	fi
}

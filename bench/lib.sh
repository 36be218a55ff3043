# bench/lib.sh - shared by bench/run and the peers' ctl scripts.
# Sourced with the stack's env exported (PGRELAY_*).
BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_RAW=$BENCH_ROOT/bench/results/raw

qa() { psql "$PGRELAY_SOURCE_DSN" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
qb() { psql "$PGRELAY_TARGET_DSN" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

bench_die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# empty_tables: employees on A and B, and pgrelay's state on both.
empty_tables() {
	# pgrelay_changes after employees: it also drops the record of that
	# TRUNCATE (the bench replicates employees alone; RESTART IDENTITY
	# restarts change_id, hence B's versions and horizon go too)
	qa -c "TRUNCATE employees RESTART IDENTITY;
	       TRUNCATE pgrelay_changes, pgrelay_producer_state, pgrelay_snapshot_state RESTART IDENTITY"
	empty_b
}

# empty_b: B's employees, their versions (pgrelay_row_version, employees'
# version table in pgrelay_targets) and their truncate horizon.
empty_b() {
	qb -c "TRUNCATE employees, pgrelay_row_version;
	    UPDATE pgrelay_targets SET horizon = 0, truncated_at = NULL WHERE target = 'employees'::regclass"
}

# rows_equal: true if A and B hold the same employees, row by row.
rows_equal() {
	local q="SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY emp_id), '')) FROM employees e"
	[ "$(qa -c "$q")" = "$(qb -c "$q")" ]
}

# kafka_topics ARGS...: Kafka's own topic tool from the broker's jars.
kafka_topics() {
	java -Xmx128m -cp "$BENCH_ROOT/.cache/kafka/libs/*" \
	    -Dlog4j2.configurationFile="$BENCH_ROOT/kafka/log4j2.yaml" \
	    org.apache.kafka.tools.TopicCommand \
	    --bootstrap-server "$PGRELAY_KAFKA_BROKERS" "$@" >/dev/null 2>&1
}

# stop_pidfile FILE [SECONDS]: SIGTERM, wait, then SIGKILL; removes FILE.
stop_pidfile() {
	local f=$1 limit=${2:-30} pid i
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < limit * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

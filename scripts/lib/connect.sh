# scripts/lib/connect.sh - a standalone Kafka Connect worker, sourced by
# scripts/connect (a Debezium JDBC sink fed by pgrelay's topics, test 150)
# and bench/peers/debezium/ctl (Debezium's source and sink, the benchmark
# peer): one copy of the install, the worker's start and stop, and the
# REST checks.
#
# The caller sets ROOT (the clone) and defines say and die.  The jars are
# the ones bench/peers/debezium/pom.xml pins (Kafka Connect, Debezium's
# connectors, the PostgreSQL and MariaDB JDBC drivers), in
# .cache/debezium/libs, fetched again only when the pom's sha256 changes.
# A worker's files live in its STATE directory: connect.pid, connect.log,
# connect.out, gc.log, log4j2.properties.

CONNECT_POM=$ROOT/bench/peers/debezium/pom.xml
CONNECT_CACHE=$ROOT/.cache/debezium
CONNECT_LIBS=$CONNECT_CACHE/libs

# ---- setup ------------------------------------------------------------------

# connect_install_packages PKG...: apt-get install of those not installed
# (sudo unless root).  Services a package would start stay down where
# policy-rc.d forbids it; scripts/connect runs MariaDB itself either way.
connect_install_packages() {
	local p missing=() sudo=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null ||
			die "missing Debian packages: ${missing[*]}; run this as root or install sudo"
		sudo=(sudo)
	fi
	say "installing ${missing[*]}"
	mkdir -p "$CONNECT_CACHE"
	"${sudo[@]}" apt-get update -q > "$CONNECT_CACHE/apt.log" 2>&1 ||
		{ tail -n 5 "$CONNECT_CACHE/apt.log" >&2; die "apt-get update failed (log above); check the apt sources, then rerun"; }
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q \
		--no-install-recommends "${missing[@]}" >> "$CONNECT_CACHE/apt.log" 2>&1 ||
		{ tail -n 10 "$CONNECT_CACHE/apt.log" >&2; die "apt-get install failed (log above); fix it, then rerun"; }
}

connect_jar_count() { find "$1" -maxdepth 1 -name '*.jar' 2>/dev/null | wc -l; }

# connect_install_jars: the pom's jars into .cache/debezium/libs, unless
# they are there for this very pom.
connect_install_jars() {
	local want stamp=$CONNECT_CACHE/pom.sha256 libs=$CONNECT_LIBS
	want=$(sha256sum "$CONNECT_POM" | cut -d' ' -f1)
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ "$(connect_jar_count "$libs")" -gt 0 ]; then
		return 0
	fi
	say "fetching Kafka Connect, Debezium and the JDBC drivers from Maven Central (${CONNECT_POM#"$ROOT"/})"
	mkdir -p "$CONNECT_CACHE"
	rm -rf "$libs.new"
	if ! mvn -q -B -f "$CONNECT_POM" dependency:copy-dependencies \
		-DoutputDirectory="$libs.new" -Dmaven.repo.local="$ROOT/.cache/m2" \
		> "$CONNECT_CACHE/mvn.log" 2>&1; then
		tail -n 20 "$CONNECT_CACHE/mvn.log" >&2
		die "Maven could not fetch the jars (see $CONNECT_CACHE/mvn.log); check access to Maven Central, then rerun"
	fi
	[ "$(connect_jar_count "$libs.new")" -gt 0 ] || die "Maven fetched no jars; see $CONNECT_CACHE/mvn.log"
	rm -rf "$libs"
	mv "$libs.new" "$libs"
	echo "$want" > "$stamp"
	say "jars fetched ($(connect_jar_count "$libs") in ${libs#"$ROOT"/})"
}

# ---- libpq DSNs -------------------------------------------------------------

# dsn_get DSN KEY [DEFAULT]: one key of a libpq key=value DSN (no quoting).
dsn_get() {
	local kv
	for kv in $1; do
		[ "${kv%%=*}" = "$2" ] && { printf '%s' "${kv#*=}"; return 0; }
	done
	printf '%s' "${3:-}"
}

# dsn_password DSN: password= of the DSN, else the passfile's matching line.
dsn_password() {
	local dsn=$1 pw host port db user pf h p d u rest
	pw=$(dsn_get "$dsn" password)
	[ -n "$pw" ] && { printf '%s' "$pw"; return 0; }
	host=$(dsn_get "$dsn" host localhost); port=$(dsn_get "$dsn" port 5432)
	db=$(dsn_get "$dsn" dbname); user=$(dsn_get "$dsn" user)
	pf=$(dsn_get "$dsn" passfile "${PGPASSFILE:-$HOME/.pgpass}")
	[ -r "$pf" ] || die "no password for $user@$host:$port: the DSN has none and passfile $pf is unreadable"
	while IFS=: read -r h p d u rest; do
		{ [ "$h" = "*" ] || [ "$h" = "$host" ]; } &&
			{ [ "$p" = "*" ] || [ "$p" = "$port" ]; } &&
			{ [ "$d" = "*" ] || [ "$d" = "$db" ]; } &&
			{ [ "$u" = "*" ] || [ "$u" = "$user" ]; } &&
			{ printf '%s' "$rest"; return 0; }
	done < "$pf"
	die "no line for $host:$port:$db:$user in passfile $pf"
}

# ---- the worker -------------------------------------------------------------

# connect_worker_pid STATE: prints the worker's pid if it runs.
connect_worker_pid() {
	local pid f=$1/connect.pid
	[ -s "$f" ] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null && grep -q ConnectStandalone "/proc/$pid/cmdline" 2>/dev/null; then
		echo "$pid"
	fi
}

connect_rest() { curl -sS --max-time 2 "http://127.0.0.1:$1$2"; }	# PORT PATH

# connector_running PORT NAME: the connector and all its tasks RUNNING.
connector_running() {
	local s
	s=$(connect_rest "$1" "/connectors/$2/status" 2>/dev/null) || return 1
	jq -e '.connector.state == "RUNNING" and (.tasks | length) > 0 and
	       all(.tasks[]; .state == "RUNNING")' <<<"$s" >/dev/null 2>&1
}

# connector_failed PORT NAME: prints the trace of a FAILED connector or
# task; false if none failed.
connector_failed() {
	local s
	s=$(connect_rest "$1" "/connectors/$2/status" 2>/dev/null) || return 1
	jq -er '[.connector, .tasks[]] | map(select(.state == "FAILED")) | first | .trace' <<<"$s" 2>/dev/null
}

# connect_write_log4j STATE: the worker logs to STATE/connect.log.
connect_write_log4j() {
	cat > "$1/log4j2.properties" <<-EOF
	status=warn
	appender.file.type=File
	appender.file.name=file
	appender.file.fileName=$1/connect.log
	appender.file.layout.type=PatternLayout
	appender.file.layout.pattern=[%d] %p %m (%c{1})%n
	rootLogger.level=INFO
	rootLogger.appenderRef.file.ref=file
	logger.reflections.name=org.reflections
	logger.reflections.level=ERROR
	EOF
}

# connect_worker_start STATE PORT HEAP TIMEOUT WORKER.properties
# CONNECTOR.properties...: starts a standalone worker in the background
# (setsid: it outlives its caller's signals) and returns once every
# connector named in the files and all their tasks are RUNNING.  A
# connector that FAILED, a worker that exited or a timeout: the worker is
# stopped, the trace or the log's tail printed, and die.
connect_worker_start() {
	local state=$1 port=$2 heap=$3 timeout=$4 t0=$SECONDS pid c trace all
	shift 4
	[ "$(connect_jar_count "$CONNECT_LIBS")" -gt 0 ] ||
		die "no jars in ${CONNECT_LIBS#"$ROOT"/}; run: scripts/connect setup"
	pid=$(connect_worker_pid "$state")
	[ -z "$pid" ] || die "a worker already runs from $state (pid $pid); stop it first"
	if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/"; then
		die "port $port is taken (another worker?); stop it or choose another REST port"
	fi
	all=$(sed -n 's/^name=//p' "${@:2}")
	connect_write_log4j "$state"
	: > "$state/connect.log"
	setsid bash -c 'echo $$ > "$1"; shift; exec "$@"' _ "$state/connect.pid" \
		java -Xms128m "-Xmx$heap" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
		"-Xlog:gc:file=$state/gc.log:time,uptime" -Djava.awt.headless=true \
		"-Dlog4j2.configurationFile=$state/log4j2.properties" \
		-cp "$CONNECT_LIBS/*" org.apache.kafka.connect.cli.ConnectStandalone "$@" \
		< /dev/null > "$state/connect.out" 2>&1 &
	while [ $((SECONDS - t0)) -lt "$timeout" ]; do
		[ -s "$state/connect.pid" ] || { sleep 0.2; continue; }
		if [ -z "$(connect_worker_pid "$state")" ]; then
			tail -n 20 "$state/connect.log" "$state/connect.out" >&2 2>/dev/null || true
			die "the Connect worker exited during start (logs above; all in $state)"
		fi
		pid=0
		for c in $all; do
			connector_running "$port" "$c" || { pid=1; break; }
		done
		if [ "$pid" = 0 ]; then
			say "worker pid $(cat "$state/connect.pid"), $(echo $all) RUNNING after $((SECONDS - t0)) s (REST port $port)"
			return 0
		fi
		for c in $all; do
			if trace=$(connector_failed "$port" "$c"); then
				printf '%s\n' "$trace" | head -n 15 >&2
				connect_worker_stop "$state" >/dev/null
				die "connector $c FAILED (trace above; log $state/connect.log); worker stopped"
			fi
		done
		sleep 0.2
	done
	connect_worker_stop "$state" >/dev/null
	die "the connectors were not RUNNING after $timeout s; see $state/connect.log (worker stopped)"
}

# connect_worker_stop STATE: SIGTERM, KILL after 30 s.
connect_worker_stop() {
	local state=$1 pid i
	pid=$(connect_worker_pid "$state")
	[ -n "$pid" ] || { say "no worker runs from $state"; rm -f "$state/connect.pid"; return 0; }
	kill -TERM "$pid"
	for i in $(seq 1 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.2
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "worker $pid still up after 30 s; sending KILL"
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$state/connect.pid"
	say "worker $pid stopped (state kept in $state)"
}

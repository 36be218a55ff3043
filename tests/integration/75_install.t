#!/usr/bin/env bash
# The installed files work together (issue 15, items 10-12).
#
# make install into a DESTDIR (PREFIX=/usr/local); the service's user made
# from the installed sysusers file on this host (systemd-sysusers FILE); the
# installed tmpfiles.d lines applied with their paths under the DESTDIR
# (--root= would look the user up in the DESTDIR's own /etc/passwd, which
# a staging tree has not); the runtime directory made as systemd makes it
# from the unit's RuntimeDirectory= and RuntimeDirectoryMode=. Then, as the
# unit's User= and Group= (setpriv, no capabilities, no new privileges, the
# unit's UMask=, a clean environment with the unit's EnvironmentFile= and
# RUNTIME_DIRECTORY), the unit's own ExecStartPre= (pgrelayd -t) and
# ExecStart= with their paths under the DESTDIR: a snapshot and changes
# reach B, a CSV dropped into the installed spool reaches B and done/, and
# TERM drains. systemd-analyze verify (its man pages found where they were
# installed) and security on the installed unit; the unit's ReadWritePaths=
# cover the config's spool; the man pages render without a warning and
# pgrelay.conf(5) names every key of config.c's schema; an install with
# other PREFIX, SYSCONFDIR and LOCALSTATEDIR leaves no default path behind.
#
# The user is deleted at the end only if this test created it.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (useradd, setpriv)"
	exit 0
fi
# The service's user must reach its files under the test's directory, as it
# reaches /usr and /etc.
chmod 0755 "$T_DIR"

R=$T_DIR/root
P=/usr/local
SAN=
[ "$(basename "$BIN")" = build-san ] && SAN=SAN=1	# install what is under test
CREATED_USER=

remove_user() {
	[ -n "$CREATED_USER" ] || return 0
	userdel "$CREATED_USER" 2>/dev/null
	getent group "$CREATED_USER" >/dev/null && groupdel "$CREATED_USER" 2>/dev/null
	return 0
}
trap 'cleanup; remove_user' EXIT

# reroot: every absolute path of a command line (or a path) under $R.
reroot() { sed -E "s#(^|[ =])-?/#\1$R/#g"; }
# unit_get FILE KEY: the value of KEY= in a unit (the last one).
unit_get() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
# conf_get FILE GROUP.KEY: a key's value in a libconfig file as pgrelay
# ships it (one key per line), quotes removed.
conf_get() {
	awk -v g="${2%%.*}" -v k="${2#*.}" '
	    /^[a-z_]+ = \{/ { grp = $1 }
	    grp == g && $1 == k { v = $0; sub(/^[^=]*= */, "", v); sub(/;.*/, "", v);
	                          gsub(/"/, "", v); print v; exit }' "$1"
}
# conf_set FILE GROUP.KEY VALUE: rewrites one key's value in place (same
# inode: owner and mode stay as installed); fails when the key is absent.
conf_set() {
	local f=$1 new
	new=$(awk -v g="${2%%.*}" -v k="${2#*.}" -v val="$3" '
	    /^[a-z_]+ = \{/ { grp = $1 }
	    grp == g && $1 == k && !done { sub(/=[^;]*;/, "= " val ";"); done = 1 }
	    { print } END { exit !done }' "$f") || return 1
	printf '%s\n' "$new" > "$f"
}
# rw_covers UNIT DIR: a ReadWritePaths= entry of UNIT is DIR or above it.
rw_covers() {
	local p
	for p in $(sed -n 's/^ReadWritePaths=//p' "$1"); do
		p=${p#-}; p=${p#+}; p=${p%/}
		case "$2/" in "$p"/*) return 0 ;; esac
	done
	return 1
}

# ---- make install into a DESTDIR ----------------------------------------------

group_before=no
getent group pgrelay >/dev/null && group_before=yes
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$ROOT" -s $SAN install DESTDIR="$R" PREFIX=$P > "$T_DIR/install.out" 2>&1
is "$?" 0 "make ${SAN:+$SAN }install DESTDIR=... PREFIX=$P succeeds as root" ||
	sed 's/^/#   /' "$T_DIR/install.out" | tail -n 5 >&2

UNIT=$R$P/lib/systemd/system/pgrelay.service
SYSUSERS=$R$P/lib/sysusers.d/pgrelay.conf
TMPFILES=$R$P/lib/tmpfiles.d/pgrelay.conf
MAN=$R$P/share/man
missing=
for f in $P/bin/pgrelayd $P/bin/pgrelayctl $P/bin/pgrelay-producer \
    $P/bin/pgrelay-snapshot $P/bin/pgrelay-consumer $P/bin/pgrelay-etl_producer \
    $P/bin/pgrelay-etl_loader /etc/pgrelay/pgrelay.conf \
    $P/lib/systemd/system/pgrelay.service $P/lib/sysusers.d/pgrelay.conf \
    $P/lib/tmpfiles.d/pgrelay.conf $P/share/man/man8/pgrelayd.8 \
    $P/share/man/man1/pgrelayctl.1 $P/share/man/man5/pgrelay.conf.5 \
    $P/share/doc/pgrelay/README.md; do
	[ -e "$R$f" ] || missing="$missing $f"
done
is "$missing" "" "the programs, config, unit, sysusers and tmpfiles files, man pages and README are installed"

# ---- the user, the tmpfiles lines, the runtime directory --------------------

SVC_USER=$(unit_get "$UNIT" User)
SVC_GROUP=$(unit_get "$UNIT" Group)
is "$(awk '$1 == "u" { print $2 }' "$SYSUSERS" 2>/dev/null)" "$SVC_USER" \
    "the sysusers file makes the unit's User= ($SVC_USER)"
is "$SVC_GROUP" "$SVC_USER" "the unit's Group= is that user's group"
: "${SVC_USER:=pgrelay}" "${SVC_GROUP:=pgrelay}"

CONF_PATH=$(unit_get "$UNIT" ExecStart | sed -n 's/.* -c \([^ ]*\).*/\1/p')
is "$CONF_PATH" /etc/pgrelay/pgrelay.conf "ExecStart= names the installed config"
CONF=$R${CONF_PATH:-/etc/pgrelay/pgrelay.conf}
if [ "$group_before" = yes ]; then
	want_owner="root:pgrelay 640"
else
	want_owner="root:root 640"	# the group does not exist yet: tmpfiles sets it
fi
is "$(stat -c '%U:%G %a' "$CONF" 2>/dev/null)" "$want_owner" \
    "make install leaves the config $want_owner (group pgrelay existed: $group_before)"

if getent passwd "$SVC_USER" >/dev/null; then
	how="there before: used, and left in place"
else
	systemd-sysusers "$SYSUSERS" > "$T_DIR/sysusers.out" 2>&1
	getent passwd "$SVC_USER" >/dev/null && CREATED_USER=$SVC_USER
	how="made by systemd-sysusers from the installed file"
fi
getent passwd "$SVC_USER" >/dev/null && getent group "$SVC_GROUP" >/dev/null
ok $? "user and group $SVC_USER exist ($how)"

reroot < "$TMPFILES" > "$T_DIR/tmpfiles.conf" 2>/dev/null
systemd-tmpfiles --create "$T_DIR/tmpfiles.conf" > "$T_DIR/tmpfiles.out" 2>&1
is "$?" 0 "systemd-tmpfiles --create applies the installed tmpfiles.d lines" ||
	sed 's/^/#   /' "$T_DIR/tmpfiles.out" >&2
is "$(stat -c '%U:%G %a' "$CONF" 2>/dev/null)" "root:$SVC_GROUP 640" \
    "the installed config is root:$SVC_GROUP 0640 after the post-install step"

SPOOL_INSTALLED=$(conf_get "$CONF" etl.spool_dir)
SPOOL=$R$SPOOL_INSTALLED
# as_service CMD...: CMD as the unit runs it: its user and group, its
# umask, no capability, no new privileges, a clean environment with the
# unit's EnvironmentFile= and the RUNTIME_DIRECTORY systemd sets.
UMASK=$(unit_get "$UNIT" UMask)
RTD_NAME=$(unit_get "$UNIT" RuntimeDirectory)
RTD_MODE=$(unit_get "$UNIT" RuntimeDirectoryMode)
mkdir -p "$T_DIR/run"
RTD=$T_DIR/run/${RTD_NAME:-pgrelay}
install -d -o "$SVC_USER" -g "$SVC_GROUP" -m "${RTD_MODE:-0755}" "$RTD"
ENV_FILE=$(unit_get "$UNIT" EnvironmentFile | reroot)
# The local stack's brokers and DSNs where an operator puts them (README,
# Install): the environment file, read by systemd as root, and the
# password in a passfile of the service's user (libpq wants it 0600).
PASSFILE=$(dirname "$CONF")/pgpass
dsn_for_service() { sed -E "s#passfile=[^ ]*#passfile=$PASSFILE#" <<< "$1"; }
pf=$(sed -nE 's/.*passfile=([^ ]*).*/\1/p' <<< "$PGRELAY_SOURCE_DSN")
[ -z "$pf" ] || install -o "$SVC_USER" -g "$SVC_GROUP" -m 0600 "$pf" "$PASSFILE"
cat > "$ENV_FILE" <<ENV
PGRELAY_KAFKA_BROKERS="$PGRELAY_KAFKA_BROKERS"
PGRELAY_SOURCE_DSN="$(dsn_for_service "$PGRELAY_SOURCE_DSN")"
PGRELAY_TARGET_DSN="$(dsn_for_service "$PGRELAY_TARGET_DSN")"
ENV
SVC_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	HOME="$(getent passwd "$SVC_USER" | cut -d: -f6)" USER="$SVC_USER"
	LOGNAME="$SVC_USER" RUNTIME_DIRECTORY="$RTD"
	ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS")
while IFS= read -r line; do
	[[ $line =~ ^([A-Z_]+)=\"(.*)\"$ ]] && SVC_ENV+=("${BASH_REMATCH[1]}=${BASH_REMATCH[2]}")
done < "$ENV_FILE"
svc_exec() {	# in a subshell of its own: it becomes CMD
	umask "${UMASK:-0022}"
	exec setpriv --reuid="$SVC_USER" --regid="$SVC_GROUP" --init-groups \
	    --inh-caps=-all --bounding-set=-all --no-new-privs -- \
	    env -i "${SVC_ENV[@]}" "$@"
}
as_service() { ( svc_exec "$@" ); }

as_service test -w "$SPOOL" -a -w "$SPOOL/done" -a -w "$SPOOL/failed" -a -r "$CONF"
ok $? "$SVC_USER can read the config and write the spool ($SPOOL_INSTALLED), done/ and failed/"
rw_covers "$UNIT" "$SPOOL_INSTALLED"
ok $? "the unit's ReadWritePaths= let the service write etl.spool_dir $SPOOL_INSTALLED"

# ---- the installed pipeline, as the service's user ------------------------

# The installed config, renamed for this test: its topics and groups, its
# spool under the DESTDIR, the ETL on.  Brokers and DSNs come from the
# environment file; runtime_dir from RUNTIME_DIRECTORY.
for kv in "kafka.cdc_topic=\"$T_TOPIC\"" "kafka.dlq_topic=\"$T_DLQ\"" \
    "kafka.group_id=\"$T_GROUP\"" "etl.enabled=true" "etl.spool_dir=\"$SPOOL\"" \
    "etl.topic=\"$T_TOPIC.etl\"" "etl.dlq_topic=\"$T_TOPIC.etl.dlq\"" \
    "etl.group_id=\"$T_GROUP-etl\""; do
	conf_set "$CONF" "${kv%%=*}" "${kv#*=}" || { ok 1 "the installed config has ${kv%%=*}"; }
done
# and the topic of its cdc.tables entry: the shipped one outlives a run on
# the same broker, and a later run's consumers would replay it
new=$(sed 's|{ source = "public.employees"; topic = "[^"]*";|{ source = "public.employees"; topic = "'"$T_TOPIC"'";|' "$CONF") &&
    printf '%s\n' "$new" > "$CONF" && grep -qF "topic = \"$T_TOPIC\";" "$CONF" ||
	ok 1 "the installed config's cdc.tables names public.employees' topic"

read -ra PRE <<< "$(unit_get "$UNIT" ExecStartPre | reroot)"
as_service "${PRE[@]}" > "$T_DIR/check.out" 2>&1
is "$?" 0 "ExecStartPre= (${PRE[*]##*/}) as $SVC_USER: the config is valid" ||
	sed 's/^/#   /' "$T_DIR/check.out" >&2

reset_pipeline >/dev/null
qb -c "TRUNCATE department_employee, department_employee_salary, etl_files RESTART IDENTITY"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2008-01-01' + i, 'c', 20000 + i
         FROM generate_series(1, 200) i"

read -ra START <<< "$(unit_get "$UNIT" ExecStart | reroot)"
: >> "$T_DIR/sup.log"
( svc_exec "${START[@]}" ) >> "$T_DIR/sup.log" 2>&1 &
T_PIDS[sup]=$!		# pgrelayd itself: the subshell exec'd it
wait_until 60 'same_rows'
compare_ab "the installed pipeline's snapshot, run as $SVC_USER" =200
qa -c "UPDATE employees SET salary = salary + 7 WHERE emp_id % 3 = 0" \
   -c "DELETE FROM employees WHERE emp_id % 10 = 1" \
   -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       VALUES ('new', 'row', DATE '2009-09-09', 'x', 55555)"
wait_until 30 'same_rows'
compare_ab "changes after the snapshot" =181
versions_match "the installed pipeline"

{
	head -n 1 "$ROOT/data/Employee_Salaries.csv"
	echo 'ECC,ECC 01 Test,P1,Technician I,Exempt,01-Mar-2015,01-Mar-2015,50000.75'
	echo 'CIT,CIT 02 Test,P2,Analyst II,Exempt,15-Jun-2012,15-Jun-2012,61000.20'
	echo 'AGR,AGR 03 Test,P3,Clerk,Exempt,15-Jun-2012,15-Jun-2012,40000'
} > "$SPOOL/.install.csv.part"
mv "$SPOOL/.install.csv.part" "$SPOOL/install.csv"
wait_until 30 'test -f "$SPOOL/done/install.csv"'
ok $? "a CSV dropped into the installed spool is moved to done/ by $SVC_USER"
is "$(qb -c "SELECT department, total_salary FROM department_employee_salary ORDER BY 1" | tr '\n' ' ')" \
    "CIT|61000 ECC|50000 " "its records reach B (two kept, one filtered out)"

sup=${T_PIDS[sup]}
is "$(ps -o user= -p "$sup" --ppid "$sup" | sort -u | tr -d ' ' | tr '\n' ' ')" "$SVC_USER " \
    "pgrelayd and its $(ps -o pid= --ppid "$sup" | wc -l) workers run as $SVC_USER, none as root"
as_service "$R$P/bin/pgrelayctl" status > "$T_DIR/ctl.out" 2>&1
is "$?" 0 "the installed pgrelayctl, as $SVC_USER, finds the socket in RUNTIME_DIRECTORY"
grep -q "^producer" "$T_DIR/ctl.out" && grep -q "^etl_producer" "$T_DIR/ctl.out"
ok $? "and lists the producer and the ETL producer"
is "$(stat -c '%U %a' "$RTD/active.conf" 2>/dev/null)" "$SVC_USER 600" \
    "the active config copy in the runtime directory is $SVC_USER's alone"
stop_worker sup TERM
is "$?" 0 "SIGTERM: the installed pgrelayd drains and exits 0"

# ---- the installed unit ---------------------------------------------------------

sed -e "s|$P/bin/|$R$P/bin/|g" "$UNIT" > "$T_DIR/pgrelay.service"
out=$(MANPATH=$MAN systemd-analyze verify "$T_DIR/pgrelay.service" 2>&1)
is "$?" 0 "systemd-analyze verify passes on the installed unit (ExecStart= under the DESTDIR, man pages from MANPATH=$MAN)"
is "$out" "" "and prints no warning"
score=$(systemd-analyze security --offline=true "$T_DIR/pgrelay.service" 2>/dev/null |
	sed -n 's/.*Overall exposure level for pgrelay.service: \([0-9.]*\).*/\1/p')
diag "systemd-analyze security exposure of the installed unit: $score"
ok "$(awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'; echo $?)" \
    "the installed unit's exposure $score is 2.0 or below"

# ---- the man pages -------------------------------------------------------------

for page in man8/pgrelayd.8 man1/pgrelayctl.1 man5/pgrelay.conf.5; do
	warn=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
	    man --warnings -E UTF-8 -l -Tutf8 -Z "$MAN/$page" 2>&1 >/dev/null)
	is "$?|$warn" "0|" "man renders ${page#*/} without a warning"
done
LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$MAN/man5/pgrelay.conf.5" > "$T_DIR/conf.5.txt" 2>/dev/null
# config.c's schema, read from its source: every key and every
# environment variable that overrides one.
keys=$(sed -nE 's/^[[:space:]]*(STR|INT|INT64|BOOL)\("([a-z_]+)", "([a-z_]+)".*/\2.\3/p' \
    "$ROOT/common/config.c")
envs=$(sed -nE 's/^[[:space:]]*STR\(.*"([A-Z_]+)"\),$/\1/p' "$ROOT/common/config.c")
missing=
for k in $keys $envs; do
	grep -qF -- "$k" "$T_DIR/conf.5.txt" || missing="$missing $k"
done
ok "$([ "$(echo "$keys" | wc -l)" -ge 45 ] && [ -z "$missing" ]; echo $?)" \
    "pgrelay.conf(5) names each of config.c's $(echo "$keys" | wc -w) keys and $(echo "$envs" | wc -w) environment overrides" ||
	diag "missing:$missing"

# Every option the programs' own usage names is in their page.
missing=
for pp in pgrelayd:man8/pgrelayd.8 pgrelayctl:man1/pgrelayctl.1; do
	LC_ALL=C.UTF-8 MANWIDTH=200 man -l "$MAN/${pp#*:}" > "$T_DIR/page.txt" 2>/dev/null
	for o in -h $("$R$P/bin/${pp%%:*}" -h 2>&1 | grep -oE -- '(^|[ [])--?[a-z]+' | tr -d ' ['); do
		grep -qE -- "(^| )$o( |$|,)" "$T_DIR/page.txt" || missing="$missing ${pp%%:*}:$o"
	done
done
is "$missing" "" "pgrelayd(8) and pgrelayctl(1) name every option of their usage"

# ---- other PREFIX, SYSCONFDIR, LOCALSTATEDIR --------------------------------------

A=$T_DIR/alt
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$ROOT" -s $SAN install DESTDIR="$A" PREFIX=/opt/pgrelay SYSCONFDIR=/etc/opt \
    LOCALSTATEDIR=/var/opt > "$T_DIR/install-alt.out" 2>&1
is "$?" 0 "make install PREFIX=/opt/pgrelay SYSCONFDIR=/etc/opt LOCALSTATEDIR=/var/opt"
AUNIT=$A/opt/pgrelay/lib/systemd/system/pgrelay.service
is "$(unit_get "$AUNIT" ExecStart)" "/opt/pgrelay/bin/pgrelayd -c /etc/opt/pgrelay/pgrelay.conf" \
    "the unit's ExecStart= follows PREFIX and SYSCONFDIR"
aspool=$(conf_get "$A/etc/opt/pgrelay/pgrelay.conf" etl.spool_dir)
is "$aspool" /var/opt/spool/pgrelay/etl "the installed config's etl.spool_dir follows LOCALSTATEDIR"
rw_covers "$AUNIT" "$aspool"
ok $? "the unit's ReadWritePaths= follow it"
grep -q " $aspool " "$A/opt/pgrelay/lib/tmpfiles.d/pgrelay.conf" 2>/dev/null &&
    grep -q "^z /etc/opt/pgrelay/pgrelay.conf " "$A/opt/pgrelay/lib/tmpfiles.d/pgrelay.conf"
ok $? "the tmpfiles.d lines make that spool and set the config's group there"
left=$(grep -lE '/usr/local|/etc/pgrelay|/var/spool' "$AUNIT" \
    "$A/opt/pgrelay/lib/tmpfiles.d/pgrelay.conf" "$A/etc/opt/pgrelay/pgrelay.conf" 2>&1)
is "$left" "" "no default path is left in the unit, the tmpfiles.d file or the config"
# The man pages name the installed paths; pgrelay.conf(5) also gives
# etl.spool_dir's compiled default, which no install changes.
left=$(grep -lE '/usr/local|/etc/pgrelay' "$A"/opt/pgrelay/share/man/man*/* 2>&1)
grep -q '^\.I /etc/opt/pgrelay/pgrelay.conf$' "$A/opt/pgrelay/share/man/man8/pgrelayd.8" &&
    grep -q '^\.I /var/opt/spool/pgrelay/etl$' "$A/opt/pgrelay/share/man/man8/pgrelayd.8"
is "$?|$left" "0|" "the man pages name the config and the spool where they were installed, and no default path"

done_testing

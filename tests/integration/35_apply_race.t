#!/usr/bin/env bash
# Two applies of one row at once, driven straight against B (issue 14,
# item 7): two members that briefly hold one partition, or a stopped member
# that wakes up, apply changes of the same emp_id in two transactions.
# Session 1 applies its change and holds its transaction open; session 2
# applies its change (it waits for session 1, or not); session 1 commits,
# then session 2.  Whatever the order, the newest version must be what B
# keeps (the row in employees and its pgrelay_row_version), and each
# apply's answer must say what it did: the version B had, from which the
# consumer counts a change applied or stale (newer() in
# workers/consumer.c).  Cases: a new row, both commit orders, each
# way (in a batch, alone) and the two mixed; a delete against an insert; an existing row;
# a deleted row (tombstone) created again.  Then two sessions apply
# overlapping batches of new rows flat out, in opposite key orders: no
# deadlock, the newer version wins every row.
. "$(dirname "$0")/lib.sh"

reset_pipeline >/dev/null
ok $? "pipeline tables reset"

# The consumer makes employees' apply function on B (pgrelay_targets.apply_fn)
# when it starts; this test then calls it directly.
CONF=$(write_config)
start_worker c consumer -c "$CONF"
wait_until 30 'test -n "$(qb -c "SELECT apply_fn FROM pgrelay_targets WHERE target = '\''employees'\''::regclass")"'
stop_worker c
FN=$(qb -c "SELECT apply_fn FROM pgrelay_targets WHERE target = 'employees'::regclass")
[ -n "$FN" ]
ok $? "the consumer made employees' apply function ($FN)"

declare -A S_FD=() S_PID=()

# sess_open N: psql session N on B, fed through a FIFO; its output (-At,
# errors included) in $T_DIR/sN.out; application_name t35-PID-sN.
sess_open() {
	local n=$1 fd
	rm -f "$T_DIR/s$n.in"
	mkfifo "$T_DIR/s$n.in"
	: > "$T_DIR/s$n.out"
	PGAPPNAME="t35-$$-s$n" psql "$PGRELAY_TARGET_DSN" -X -q -At -v ON_ERROR_STOP=0 \
	    < "$T_DIR/s$n.in" > "$T_DIR/s$n.out" 2>&1 &
	S_PID[$n]=$!
	exec {fd}> "$T_DIR/s$n.in"
	S_FD[$n]=$fd
}

sess_send() { printf '%s\n' "$2" >&"${S_FD[$1]}"; }	# sess_send N SQL

sess_close() {
	local n=$1
	sess_send "$n" '\q'
	exec {S_FD[$n]}>&-
	wait "${S_PID[$n]}"
}

# wait_for SECONDS 'SHELL CODE': as wait_until, every 20 ms.
wait_for() {
	local end=$((SECONDS + $1))
	while [ $SECONDS -lt "$end" ]; do
		eval "$2" && return 0
		sleep 0.02
	done
	eval "$2"
}

# sess_mark N MARK: sends \echo @MARK; sess_wait N MARK waits until
# session N printed it, i.e. until everything sent before it has run.
sess_mark() { sess_send "$1" "\\echo @$2"; }
sess_wait() {
	wait_for 20 "grep -qx '@$2' '$T_DIR/s$1.out'" ||
	    diag "session $1 did not reach $2"
}

# Is session N waiting for a lock?
sess_waits() {
	[ "$(qb -c "SELECT count(*) FROM pg_stat_activity
	             WHERE application_name = 't35-$$-s$1' AND wait_event_type = 'Lock'")" = 1 ]
}

# apply_sql FUNC OP VERSION ID: the statement that applies one change of
# row ID through employees' apply function, as the consumer calls it: in a
# batch (set) or alone (one: a batch of one, when B refused a batch and
# the consumer applies its messages one at a time).  The change's
# first_name is OP and VERSION (c12), so the row on B tells which change
# wrote it.
apply_sql() {
	local f=$1 op=$2 v=$3 id=$4
	echo "SELECT pgrelay_ord, pgrelay_had FROM $FN('[{\"op\":\"$op\",\"version\":$v,
	  \"row\":{\"emp_id\":$id,\"first_name\":\"$op$v\",\"last_name\":\"race\",
	  \"dob\":14000,\"city\":\"c\",\"salary\":20000}}]'::json) ORDER BY 1;"
}

# newer HAS CUR OP VERSION: whether a change applies over version CUR (HAS:
# B holds one), as the apply functions and the consumer decide.
newer() { [ "$1" = 0 ] || [ "$4" -gt "$2" ] || { [ "$4" -eq "$2" ] && [ "$3" = r ]; }; }

# verdict N FUNC OP VERSION: what session N's apply answered, as the
# consumer would count it: applied, stale, or error.
verdict() {
	local n=$1 f=$2 op=$3 v=$4 out had
	out=$(grep -v '^@' "$T_DIR/s$n.out")
	if grep -qE 'ERROR|FATAL' <<< "$out"; then
		echo error
	else
		had=$(cut -d'|' -f2 <<< "$out")
		if newer "$([ -n "$had" ] && echo 1 || echo 0)" "${had:-0}" "$op" "$v"; then
			echo applied
		else
			echo stale
		fi
	fi
}

# race WHAT ID BEFORE FUNC1 OP1 V1 FUNC2 OP2 V2: row ID starts as BEFORE
# (new: no version; row@5: a row at version 5; tomb@5: deleted at 5).
# Session 1 applies OP1 at V1 with FUNC1 and holds; session 2 applies OP2
# at V2 with FUNC2; session 1 commits, then session 2.  Three TAP lines:
# the row in employees, its version, the two answers.
race() {
	local what=$1 id=$2 before=$3 f1=$4 op1=$5 v1=$6 f2=$7 op2=$8 v2=$9
	local has=0 cur=0 del=false row=none want1 want2 waited=no
	case $before in
	row@5)	qb -c "INSERT INTO employees VALUES ($id, 'c5', 'race', '2008-05-01', 'c', 20000);
	               INSERT INTO pgrelay_row_version VALUES ($id, 5, false)"
		has=1 cur=5 row=c5 ;;
	tomb@5)	qb -c "INSERT INTO pgrelay_row_version VALUES ($id, 5, true)"
		has=1 cur=5 del=true ;;
	esac
	# What applying them one by one, in commit order, leaves.
	if newer $has $cur "$op1" "$v1"; then
		want1=applied has=1 cur=$v1 row=$op1$v1 del=false
		[ "$op1" = d ] && row=none del=true
	else
		want1=stale
	fi
	if newer $has $cur "$op2" "$v2"; then
		want2=applied has=1 cur=$v2 row=$op2$v2 del=false
		[ "$op2" = d ] && row=none del=true
	else
		want2=stale
	fi
	local want_ver="$cur|$del"

	sess_open 1
	sess_open 2
	sess_send 1 "BEGIN;"
	sess_send 1 "$(apply_sql "$f1" "$op1" "$v1" "$id")"
	sess_mark 1 applied
	sess_wait 1 applied
	sess_send 2 "BEGIN;"
	sess_send 2 "$(apply_sql "$f2" "$op2" "$v2" "$id")"
	sess_mark 2 applied
	wait_for 20 "sess_waits 2 || grep -qx @applied '$T_DIR/s2.out'"
	sess_waits 2 && waited=yes
	sess_send 1 "COMMIT;"
	sess_mark 1 committed
	sess_wait 1 committed
	sess_wait 2 applied
	sess_send 2 "COMMIT;"
	sess_mark 2 committed
	sess_wait 2 committed
	local got1 got2
	got1=$(verdict 1 "$f1" "$op1" "$v1")
	got2=$(verdict 2 "$f2" "$op2" "$v2")
	sess_close 1
	sess_close 2

	what="$what ($f1 $op1$v1 holds, $f2 $op2$v2 $([ $waited = yes ] && echo waits || echo "does not wait"))"
	is "$(qb -c "SELECT coalesce(string_agg(first_name, ','), 'none') FROM employees
	              WHERE emp_id = $id")" "$row" "$what: the row in employees is $row"
	is "$(qb -c "SELECT change_id || '|' || deleted FROM pgrelay_row_version
	              WHERE emp_id = $id")" "$want_ver" "$what: its version is $want_ver"
	is "$got1 $got2" "$want1 $want2" "$what: the applies answer $want1, $want2" ||
	    sed 's/^/#   s1: /' "$T_DIR/s1.out"
	[ "$got1 $got2" = "$want1 $want2" ] || sed 's/^/#   s2: /' "$T_DIR/s2.out"
}

# A new row, both orders, each function and mixed.
race "new row, newer first"            101 new set c 12 set c 10
race "new row, older first"            102 new set c 10 set c 12
race "new row, newer first"            103 new one c 12 one c 10
race "new row, older first"            104 new one c 10 one c 12
race "new row, newer first, mixed"     105 new set c 12 one c 10
race "new row, newer first, mixed"     106 new one c 12 set c 10
race "new row, older first, mixed"     107 new set c 10 one c 12
# A delete against an insert of a new row.
race "new row, delete newer first"     111 new set d 12 set c 10
race "new row, delete newer second"    112 new set c 10 set d 12
race "new row, delete newer first"     113 new one d 12 one c 10
race "new row, delete newer second"    114 new one c 10 one d 12
race "new row, delete newer, mixed"    115 new set c 10 one d 12
# A snapshot row of the version just applied applies again.
race "new row, snapshot row of equal version" 116 new set c 12 set r 12
# A row B holds.
race "existing row, newer first"       121 row@5 set u 12 set u 10
race "existing row, older first"       122 row@5 set u 10 set u 12
race "existing row, newer first"       123 row@5 one u 12 one u 10
race "existing row, older first"       124 row@5 one u 10 one u 12
race "existing row, delete newer first"  125 row@5 set d 12 set u 10
race "existing row, delete newer second" 126 row@5 set u 10 set d 12
# A row B deleted (its version kept), created again.
race "deleted row, newer first"        131 tomb@5 set c 12 set c 10
race "deleted row, delete newer second"  132 tomb@5 set c 10 set d 12
race "deleted row, delete newer second"  133 tomb@5 one c 10 one d 12
race "deleted row, delete newer second, mixed" 134 tomb@5 one c 10 set d 12

# Flat out: two sessions apply batches of the same 20 new rows, 150
# rounds, one in ascending and one in descending key order; each has the
# newer version of half the rows.  No deadlock, no error, and B keeps the
# newer version of every row.
for s in 1 2; do
	for r in $(seq 1 150); do
		[ "$s" = 1 ] && ids=$(seq 1 20) || ids=$(seq 20 -1 1)
		rows=
		for i in $ids; do
			id=$((1000 + r * 20 + i))
			# s1 is newer on even rows, s2 on odd ones
			v=$((r * 100 + ( (i + s) % 2 == 1 ? 60 : 40 ) ))
			rows="$rows${rows:+,}{\"op\":\"c\",\"version\":$v,\"row\":{\"emp_id\":$id,\"first_name\":\"c$v\",\"last_name\":\"s$s\",\"dob\":14000,\"city\":\"c\",\"salary\":20000}}"
		done
		echo "SELECT count(*) FROM $FN('[$rows]'::json);"
	done > "$T_DIR/flat$s.sql"
done
psql "$PGRELAY_TARGET_DSN" -X -q -At -f "$T_DIR/flat1.sql" > "$T_DIR/flat1.out" 2>&1 &
p1=$!
psql "$PGRELAY_TARGET_DSN" -X -q -At -f "$T_DIR/flat2.sql" > "$T_DIR/flat2.out" 2>&1 &
p2=$!
wait $p1 $p2
is "$(grep -hE 'ERROR|FATAL' "$T_DIR"/flat[12].out | sort | uniq -c)" "" \
    "flat out: no error in 300 batches of 20 rows applied at once (no deadlock)"
is "$(qb -c "SELECT count(*) FROM pgrelay_row_version WHERE emp_id > 1000")" 3000 \
    "flat out: 3,000 rows have a version"
is "$(qb -c "SELECT count(*) FROM pgrelay_row_version v JOIN employees e USING (emp_id)
              WHERE v.emp_id > 1000 AND v.change_id % 100 = 60
                AND e.first_name = 'c' || v.change_id AND NOT v.deleted")" 3000 \
    "flat out: the newer version won every row, in employees and pgrelay_row_version"

done_testing

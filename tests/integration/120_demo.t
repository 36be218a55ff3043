#!/usr/bin/env bash
# scripts/demo ends everything it starts (issue 14, item 11): its load
# writer (a shell loop piped into psql), pgrelayd and pgrelayd's workers,
# when it ends by itself (DEMO_SECONDS=5), on Ctrl-C (SIGINT to its process
# group, as a terminal sends it) and on SIGTERM to the script alone (as
# timeout(1) or a service manager sends it).  The demo runs in a process
# group of its own, started with job control as a shell at a terminal
# starts a command (a background command of a script without it would
# ignore SIGINT), with a tag in its environment, which every process it
# starts inherits: none may carry the tag once the demo has exited.  The
# stack is already up, so the demo's scripts/stack up starts nothing.
. "$(dirname "$0")/lib.sh"

TAG=t120-$$

# demo_start LOG [VAR=VALUE...]: scripts/demo in the background, leading
# a process group of its own, output in LOG.  0 if it runs with SIGINT and
# SIGTERM not ignored (signals 2 and 15 in SigIgn), as under a terminal.
demo_start() {
	local log=$1 ign; shift
	set -m
	env "$@" PGRELAY_T120_TAG="$TAG" "$ROOT/scripts/demo" > "$log" 2>&1 < /dev/null &
	DEMO_PID=$!
	set +m
	wait_until 10 'tr "\\0" " " < "/proc/$DEMO_PID/cmdline" | grep -q "^bash .*scripts/demo"'
	ign=$(awk '/^SigIgn:/ { print $2 }' "/proc/$DEMO_PID/status")
	[ -n "$ign" ] && [ $(( 0x$ign & 0x4002 )) -eq 0 ] &&
	    [ "$(ps -o pgid= -p "$DEMO_PID" | tr -d ' ')" = "$DEMO_PID" ]
}

# demo_wait SECONDS N: waits for the demo to exit; 0 and DEMO_RC set if it
# did within SECONDS; its pgrelayd log kept as pgrelayd-N.log.
demo_wait() {
	wait_until "$1" '! kill -0 "$DEMO_PID" 2>/dev/null' || return 1
	wait "$DEMO_PID"
	DEMO_RC=$?
	cp "$ROOT/.stack/run/pgrelayd.log" "$T_DIR/pgrelayd-$2.log" 2>/dev/null
	return 0
}

# The processes that carry the tag, one "pid command line" each.
tagged() {
	local f pid
	for f in $(grep -lzx "PGRELAY_T120_TAG=$TAG" /proc/[0-9]*/environ 2>/dev/null); do
		pid=${f#/proc/}
		pid=${pid%/environ}
		echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
	done
}

# nothing_left WHAT: one TAP line; whatever is left is listed, then
# killed (by pid) so that it cannot disturb what follows.
nothing_left() {
	local left
	left=$(tagged)
	if [ -z "$left" ]; then
		ok 0 "$1: no process the demo started is left"
	else
		ok 1 "$1: $(echo "$left" | wc -l) processes the demo started are left"
		echo "$left" | sed 's/^/#   /'
		kill -KILL $(echo "$left" | cut -d' ' -f1) 2>/dev/null
		wait_until 10 'test -z "$(tagged)"'
	fi
}

# The demo's status lines (it rewrites one line with \r) show B's rows.
b_rows() {
	tr '\r' '\n' < "$1" | grep -oE 'B +[0-9]+ rows' | tail -n 1 | grep -oE '[0-9]+'
}

# 1. It ends by itself.
demo_start "$T_DIR/demo1.log" DEMO_SECONDS=5
ok $? "the demo starts (DEMO_SECONDS=5), leading its process group, SIGINT and SIGTERM not ignored"
demo_wait 90 1
ok $? "it ends by itself within 90 s"
is "${DEMO_RC:-}" 0 "it exits 0"
grep -q "^demo: B equals the valid rows of A ([0-9]* rows)$" "$T_DIR/demo1.log"
ok $? "its last line: B equals the valid rows of A" || tail -n 3 "$T_DIR/demo1.log" | sed 's/^/#   /'
nothing_left "after it ended by itself"

# 2. Ctrl-C: SIGINT to its process group, once B has rows (the consumers
# hold partitions: a clean leave of the group is quick).
DEMO_RC=
demo_start "$T_DIR/demo2.log" DEMO_SECONDS=0
ok $? "the demo starts again (DEMO_SECONDS=0: until Ctrl-C)"
wait_until 60 'test "$(b_rows "$T_DIR/demo2.log")" -gt 0 2>/dev/null'
ok $? "running until Ctrl-C, the demo shows rows on B ($(b_rows "$T_DIR/demo2.log"))"
kill -INT -- -"$DEMO_PID"
demo_wait 45 2
ok $? "after Ctrl-C it exits within 45 s"
is "${DEMO_RC:-}" 130 "with 130, as a program stopped by SIGINT"
nothing_left "after Ctrl-C"

# 3. SIGTERM to the script alone.
DEMO_RC=
demo_start "$T_DIR/demo3.log" DEMO_SECONDS=0
ok $? "and once more"
wait_until 60 'test "$(b_rows "$T_DIR/demo3.log")" -gt 0 2>/dev/null'
ok $? "running again, the demo shows rows on B ($(b_rows "$T_DIR/demo3.log"))"
kill -TERM "$DEMO_PID"
demo_wait 45 3
ok $? "after SIGTERM to the script alone it exits within 45 s"
is "${DEMO_RC:-}" 143 "with 143, as a program stopped by SIGTERM"
nothing_left "after SIGTERM"

done_testing

#!/usr/bin/env bash
# A frozen producer host (#14 item 10).  Two pgrelayd on one config; the
# one whose producer holds the lock is frozen with SIGSTOP, itself and all
# its children, in the middle of a window of changes (a paused VM or a hung
# host: its sessions on A stay open and keep their locks).  The standby
# producer must take over within a bound (target 10 s) and the rows written
# meanwhile reach B within 15 s.  When the frozen host wakes, its producer
# must neither put a change on the topic after a newer one of its row nor
# lose one: it stands by (or exits) and says so.  At the end A = B, B's
# versions are A's newest changes, the topic as the consumers read it
# (committed transactions only) carries every change at least once and
# each row's changes in change_id order (see key_order).
. "$(dirname "$0")/lib.sh"

reset_pipeline >/dev/null
T_CONSUMERS=1 T_PRODUCER_BATCH=${T_PRODUCER_BATCH:-100}
WINDOW=${T_WINDOW:-20000}	# changes of the window the holder is frozen in
CONF=$(write_config)
sed "s|$T_DIR/run|$T_DIR/run2|" "$CONF" > "$T_DIR/second.conf"
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The end offsets of the CDC topic's partitions, summed: every record
# written, those of open transactions too (read_uncommitted), or up to the
# last stable offset, as the consumers read (read_committed).
topic_end() {
	local args=() p
	for p in $(seq 0 $((${T_PARTITIONS:-4} - 1))); do args+=(-t "$T_TOPIC:$p:-1"); done
	kcat -b "$PGRELAY_KAFKA_BROKERS" -X "isolation.level=${1:-read_uncommitted}" \
	    -Q "${args[@]}" 2>/dev/null | awk '{ s += $NF } END { print s + 0 }'
}

# key_order WHAT: one TAP line.  The CDC topic read as the consumers read
# it (read_committed), snapshot rows aside, one sequence of change_ids per
# key, in offset order.  (1) A change never comes first after a newer one
# of its key: no change is late.  (2) The last copy of each change comes
# in change_id order: a change sent again (a window re-sent after a
# failover: duplicates are allowed) is followed by everything newer again,
# so a sink without versions, applying the topic in order, ends at A's
# newest state.  A woken holder that sent its stale window after the new
# holder's newer changes breaks (2).
key_order() {
	kcat -b "$PGRELAY_KAFKA_BROKERS" -X isolation.level=read_committed -C \
	    -t "$T_TOPIC" -o beginning -e -q -f '%k\t%s\n' 2>/dev/null |
	    jq -Rr 'split("\t") | select(length == 2 and .[1] != "") |
	        (.[0] | fromjson | .emp_id) as $k | (.[1] | fromjson) as $v |
	        select($v.op != "r") | "\($k) \($v.source.change_id)"' > "$T_DIR/key.seq"
	awk '
	{ n[$1]++; s[$1, n[$1]] = $2 + 0; total++ }
	END {
		for (k in n) {
			max = -1; split("", seen)
			for (i = 1; i <= n[k]; i++) {
				v = s[k, i]
				if (v in seen) { again++; continue }
				seen[v] = 1
				if (v < max) { late++; if (late <= 3) printf "#   key %s: change %d first came after %d\n", k, v, max > "/dev/stderr" }
				if (v > max) max = v
			}
			min = -1; split("", seen)
			for (i = n[k]; i >= 1; i--) {
				v = s[k, i]
				if (!(v in seen) && min >= 0 && v >= min) { stale++; if (stale <= 3) printf "#   key %s: the last copy of change %d came after change %d\n", k, v, min > "/dev/stderr" }
				seen[v] = 1
				if (min < 0 || v < min) min = v
			}
		}
		printf "%d %d %d %d %d\n", total, length(n), again, late, stale
	}' "$T_DIR/key.seq" > "$T_DIR/key.order"
	read -r total keys again late stale < "$T_DIR/key.order"
	if [ "$total" -gt 0 ] && [ "$late" -eq 0 ] && [ "$stale" -eq 0 ]; then
		ok 0 "$1: each of $keys keys' $total changes on the topic come in change_id order ($again sent again, each followed by the newer ones again)"
	else
		ok 1 "$1: of $total changes of $keys keys on the topic, $late came after a newer one of their key and the last copy of $stale came after a newer one ($again sent again)"
	fi
}

# The producer's own state (state=active, state=standby ...) as one
# supervisor shows it: SOCKET.
producer_state() {
	"$BIN/pgrelayctl" -s "$1" status --json 2>> "$T_DIR/pgrelayctl.log" |
	    jq -r '.children[] | select(.kind == "producer" and .state == "running") | .status' |
	    grep -o 'state=[a-z-]*'
}

# 1. Two supervisors on one config; the first one's producer holds the lock.
start_worker s1 pgrelayd -c "$CONF"
wait_until 30 'grep -q "holding the producer lock" "$T_DIR/s1.log"'
ok $? "the first supervisor's producer is active"
start_worker s2 pgrelayd -c "$T_DIR/second.conf"
wait_until 30 'grep -q "another producer holds the lock on the source; standing by" "$T_DIR/s2.log"'
ok $? "the second supervisor's producer stands by"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'h' || i, 'a', DATE '2010-01-01', 'c', 30000 FROM generate_series(1, 300) i"
wait_until 30 same_rows
compare_ab "before the freeze" =300
wait_until 20 'test "$(group_members)" = 2'
is "$(group_members)" 2 "both supervisors' consumers share the group"

# 2. A window of $WINDOW changes, sent $T_PRODUCER_BATCH at a time; the
# first supervisor and all its children are frozen half-way through it.
sup1=${T_PIDS[s1]}
p1=$(child_pids producer)
frozen="$sup1 $(sup_status --json | jq -r '.children[] | select(.state == "running") | .pid' | tr '\n' ' ')"
base=$(topic_end)
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'w' || i, 'b', DATE '2010-01-01', 'c', 30000 FROM generate_series(1, $WINDOW) i"
# Frozen when the topic shows an open transaction (its end beyond the last
# stable offset), if one is seen within 20 looks: a transactional producer
# has one open for part of each batch, the unmodified producer never.
# Either way the holder is frozen with the window half sent, and often
# with a batch in librdkafka's queue.
mid=0 looks=0
for i in $(seq 1 1500); do
	e=$(topic_end)
	if [ "$e" -ge $((base + WINDOW * 9 / 10)) ]; then
		mid=0
		break
	fi
	if [ "$e" -gt $((base + 100)) ]; then
		mid=1 looks=$((looks + 1))
		[ "$e" -gt "$(topic_end read_committed)" ] || [ "$looks" -ge 20 ] && break
	fi
	sleep 0.02
done
trap 'kill -CONT $frozen 2>/dev/null; cleanup' EXIT	# never leave a stopped process behind
kill -STOP $frozen
t0=$(now_ms)
sent=$(($(topic_end) - base))
open=$(($(topic_end) - $(topic_end read_committed)))
ok "$([ "$mid" = 1 ]; echo $?)" "the holder (producer pid $p1) is frozen in the middle of the window: $sent records of it on the topic, $open of them in an open transaction"
st=
for p in $frozen; do st="$st$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)"; done
is "$st" "$(echo $frozen | sed 's/[0-9]*/T/g; s/ //g')" "pgrelayd and its $(($(echo $frozen | wc -w) - 1)) children are stopped (pids $frozen)"

# 3. Rows written while the holder is frozen reach B through the standby.
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'c', DATE '2010-01-01', 'c', 30000 FROM generate_series(1, 100) i"
qa -c "UPDATE employees SET city = 'while-frozen' WHERE emp_id % 50 = 0"
takeover= arrived=
while [ $(($(now_ms) - t0)) -lt 15000 ]; do
	[ -n "$takeover" ] || ! grep -q "holding the producer lock" "$T_DIR/s2.log" ||
	    takeover=$(($(now_ms) - t0))
	if same_rows; then arrived=$(($(now_ms) - t0)); break; fi
	sleep 0.2
done
[ -n "$takeover" ] || ! grep -q "holding the producer lock" "$T_DIR/s2.log" ||
    takeover=$(($(now_ms) - t0))
diag "takeover: the standby producer active ${takeover:-never} ms after the freeze; A = B after ${arrived:-never} ms"
ok "$([ -n "$takeover" ] && [ "$takeover" -le 10000 ]; echo $?)" \
    "the standby producer takes over within 10 s of the freeze (${takeover:-never} ms)"
ok "$([ -n "$arrived" ]; echo $?)" \
    "rows written while the holder is frozen reach B within 15 s (${arrived:-never} ms)"

# 4. The frozen host wakes (all its processes at once, as a resumed VM) and
# the writes go on.
woke_at=$(wc -l < "$T_DIR/s1.log")
kill -CONT $frozen
first=$(last_change)
load_a 6 1
changes=$(changes_since "$first")
ok "$([ "$changes" -ge 100 ]; echo $?)" "the load after the wake wrote $changes changes"
load_errors "$LOAD_DEADLOCKS"

# The woken producer stands by or exits, and says so (or pgrelayd says it
# killed it as hung: it sent no keep-alive while frozen).
woken() {
	tail -n +$((woke_at + 1)) "$T_DIR/s1.log" > "$T_DIR/s1.woken.log"
	grep -E "producer\[$p1\] .*(stands by|standing by|exits|exiting)" "$T_DIR/s1.woken.log" ||
	    grep -E "\(pid $p1\) (sent no keep-alive|was killed by signal 9)" "$T_DIR/s1.woken.log"
}
wait_until 30 'woken > /dev/null'
ok $? "the woken producer (pid $p1) stands by or exits, and the log says so"
woken | head -n 3 | sed 's/^/#   /' >&2
wait_until 20 'test "$(producer_state "$T_DIR/run2/pgrelayd.sock")" = state=active'
is "$(producer_state "$T_DIR/run2/pgrelayd.sock")" state=active "the second supervisor's producer is the active one"
wait_until 20 'test "$(producer_state "$T_DIR/run/pgrelayd.sock")" = state=standby'
is "$(producer_state "$T_DIR/run/pgrelayd.sock")" state=standby "the woken supervisor's producer stands by"

# 5. Nothing lost, nothing out of order.
wait_until 60 same_rows
n=$(qa -c "SELECT count(*) FROM employees")
ok "$([ "$n" -ge $((WINDOW + 300)) ]; echo $?)" "A holds $n rows (at least the $((WINDOW + 400)) inserted, less the load's deletes)"
compare_ab "after the freeze and the wake" "=$n"
versions_match "after the freeze and the wake"
topic_complete "after the freeze and the wake" at-least-once $((WINDOW + 400 + changes))
key_order "after the freeze and the wake"
records() {	# records ISOLATION: the CDC topic's records as a reader sees them
	kcat -b "$PGRELAY_KAFKA_BROKERS" -X "isolation.level=$1" -C -t "$T_TOPIC" \
	    -o beginning -e -q -f 'x\n' 2>/dev/null | wc -l
}
diag "records of aborted transactions on the topic (a read_committed reader skips them): $(($(records read_uncommitted) - $(records read_committed)))"

stop_worker s2
is "$?" 0 "the second supervisor stops cleanly"
stop_worker s1
is "$?" 0 "the woken supervisor stops cleanly"
done_testing

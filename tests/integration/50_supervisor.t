#!/usr/bin/env bash
# pgrelayd against the real stack: config check, start-up and sd_notify,
# kill -9 of each kind restarted with nothing lost, USR1/USR2 scaling seen
# by the broker, HUP with a broken and with a changed config, a SIGSTOPped
# worker replaced, TERM draining, and pgrelayctl.
. "$(dirname "$0")/lib.sh"

T_PARTITIONS=6 T_CONSUMERS=2 T_CONSUMERS_MIN=1 T_WATCHDOG=4
CONF=$(write_config)
reset_pipeline >/dev/null

# -t: a config check only.
"$BIN/pgrelayd" -c "$CONF" -t > "$T_DIR/t.out" 2>&1
is "$?" 0 "pgrelayd -t accepts the test config"
sed 's/partitions = 6;/partitons = 6;/' "$CONF" > "$T_DIR/typo.conf"
"$BIN/pgrelayd" -c "$T_DIR/typo.conf" -t > "$T_DIR/typo.out" 2>&1
is "$?" 78 "pgrelayd -t exits 78 on a typo"
grep -q "typo.conf:[0-9]*: kafka.partitons: unknown key" "$T_DIR/typo.out"
ok $? "and names file, line and key"
sed 's/watchdog_s = 4;/watchdog_s = "4";/' "$CONF" > "$T_DIR/type.conf"
"$BIN/pgrelayd" -c "$T_DIR/type.conf" > "$T_DIR/type.out" 2>&1
is "$?" 78 "pgrelayd exits 78 on a wrong type, before starting anything"
grep -q "supervisor.watchdog_s: expected an integer, got a string" "$T_DIR/type.out"
ok $? "and says which key has which wrong type"

qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2007-06-01', 'c', 20000 + i FROM generate_series(1, 2000) i"

# Start under a fake systemd.
python3 "$ROOT/tests/integration/notify_listener.py" "$T_DIR/systemd.sock" "$T_DIR/notify.log" &
T_PIDS[listener]=$!
wait_until 5 'test -S "$T_DIR/systemd.sock"'
NOTIFY_SOCKET=$T_DIR/systemd.sock WATCHDOG_USEC=2000000 start_worker sup pgrelayd -c "$CONF"
wait_until 30 'grep -q "^READY=1" "$T_DIR/notify.log"'
ok $? "pgrelayd sends READY=1 once the snapshot is done and the producer runs"
grep -q "^EXTEND_TIMEOUT_USEC=" "$T_DIR/notify.log"
ok $? "EXTEND_TIMEOUT_USEC= while the snapshot ran"
wait_until 60 'same_rows'
compare_ab "the supervised snapshot and stream" =2000
wait_until 10 'test "$(running_count consumer)" = 2'
is "$(running_count consumer)" 2 "two consumers run (consumer.count)"
is "$(running_count producer)" 1 "one producer runs"
sup_status --json | jq -e '.children[] | select(.kind == "snapshot") | .state == "done"' >/dev/null
ok $? "the snapshot is done and not restarted"
wait_until 10 'grep -q "^STATUS=producer 1, consumers 2/2" "$T_DIR/notify.log"'
ok $? "STATUS= reports the workers"
wait_until 10 'grep -q "^WATCHDOG=1" "$T_DIR/notify.log"'
ok $? "WATCHDOG=1 is sent while healthy"
sup_status | grep -q "^consumer"
ok $? "pgrelayctl status prints the children as text"

# kill -9 of each kind: restarted, nothing lost.
load_a 12 1 & l1=$!
for kind in producer consumer; do
	old=$(child_pids $kind | head -n 1)
	kill_child "$old"
	wait_until 20 "test -n \"\$(child_pids $kind | grep -vx $old)\" && test \"\$(running_count $kind)\" = $([ $kind = producer ] && echo 1 || echo 2)"
	ok $? "a $kind killed -9 (pid $old) is restarted"
	sleep 1
done
grep -q "was killed by signal 9 (Killed)" "$T_DIR/sup.log"
ok $? "pgrelayd logs how the child ended"
wait "$l1"
wait_until 60 'same_rows'
compare_ab "after kill -9 of producer and consumer under load" 2000

# Scaling: USR1 x3 then USR2 x2 under load.
load_a 20 2 & l2=$!
for i in 1 2 3; do kill -USR1 "${T_PIDS[sup]}"; sleep 0.3; done
wait_until 20 'test "$(running_count consumer)" = 5'
is "$(running_count consumer)" 5 "three SIGUSR1 make five consumers"
wait_until 30 'test "$(group_members)" = 5'
is "$(group_members)" 5 "the broker sees five members in the group"
for i in 1 2; do kill -USR2 "${T_PIDS[sup]}"; sleep 0.3; done
wait_until 30 'test "$(running_count consumer)" = 3'
is "$(running_count consumer)" 3 "two SIGUSR2 leave three consumers"
wait_until 40 'test "$(group_members)" = 3'
is "$(group_members)" 3 "the broker sees three members in the group"
for i in 1 2 3 4 5; do kill -USR2 "${T_PIDS[sup]}"; sleep 0.2; done
wait_until 20 'test "$(running_count consumer)" = 1'
is "$(running_count consumer)" 1 "SIGUSR2 stops at consumer.min"
grep -q "the consumer pool is already at its min 1" "$T_DIR/sup.log"
ok $? "and says so"
for i in 1 2; do kill -USR1 "${T_PIDS[sup]}"; sleep 0.2; done
wait_until 20 'test "$(running_count consumer)" = 3'
wait "$l2"
load_errors "$LOAD_DEADLOCKS"
wait_until 60 'same_rows'
compare_ab "after scaling up and down under load" 2000

# HUP with a broken config: the running one stays.
pids_before=$(child_pids consumer | sort | tr '\n' ' ')
cp "$CONF" "$T_DIR/good.conf"
echo "bogus = 1;" >> "$CONF"
kill -HUP "${T_PIDS[sup]}"
wait_until 10 'grep -q "reload rejected, the running configuration stays" "$T_DIR/sup.log"'
ok $? "HUP with a broken config is rejected"
sleep 1
is "$(child_pids consumer | sort | tr '\n' ' ')" "$pids_before" "and the workers keep running untouched"
grep -q "reload rejected.*$(basename "$CONF"):[0-9]*: bogus: unknown group" "$T_DIR/sup.log"
ok $? "the rejection names file, line and key"

# HUP with a new pool size: applied; the scaled count survives a reload
# that does not change consumer.count.
cp "$T_DIR/good.conf" "$CONF"
kill -HUP "${T_PIDS[sup]}"
# All old consumers replaced, three running again.
replaced() {	# replaced N: none of $pids_before runs, N consumers do
	local p
	for p in $pids_before; do child_pids consumer | grep -qx "$p" && return 1; done
	test "$(running_count consumer)" = "$1"
}
wait_until 40 replaced 3
ok $? "a reload replaces every consumer and keeps the scaled count (3, not consumer.count 2)"
pids_before=$(child_pids consumer | tr '\n' ' ')
sed -i 's/count = 2;/count = 4;/' "$CONF"
kill -HUP "${T_PIDS[sup]}"
wait_until 40 replaced 4
ok $? "a reload with consumer.count = 4 replaces them with four"
grep -q "^RELOADING=1" "$T_DIR/notify.log"
ok $? "RELOADING=1 is sent on reload"

# A hung worker (SIGSTOP) is killed and replaced.
stopped=$(child_pids consumer | head -n 1)
kill -STOP "$stopped"
wait_until 20 '! child_pids consumer | grep -qx "$stopped" && test "$(running_count consumer)" = 4'
ok $? "a SIGSTOPped consumer is replaced"
grep -q "pid $stopped) sent no keep-alive" "$T_DIR/sup.log"
ok $? "and the log says it hung"

qa -c "UPDATE employees SET city = 'final' WHERE emp_id % 7 = 0"
wait_until 60 'same_rows'
compare_ab "before stopping" 2000

# TERM drains and exits 0; nothing of ours is left.
all=$(sup_status --json | jq -r '.children[] | select(.state == "running") | .pid' | tr '\n' ' ')
consumers=$(running_count consumer)
before=$(wc -l < "$T_DIR/sup.log")
stop_worker sup TERM
is "$?" 0 "pgrelayd exits 0 on SIGTERM after draining"
left=0
for p in $all; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
is "$left" 0 "no worker outlives the drain"
grep -q "^STOPPING=1" "$T_DIR/notify.log"
ok $? "STOPPING=1 is sent"
is "$(tail -n +$((before + 1)) "$T_DIR/sup.log" | grep -c "left the group cleanly")" "$consumers" \
    "each of the $consumers consumers left the group cleanly"
done_testing

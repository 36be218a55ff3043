#!/usr/bin/env bash
# pgrelayd's limits: a crash loop is throttled with a growing back-off and
# then stopped per restart_intensity, with exit 1 (no busy loop); a worker
# that exits 78 (config error) is never restarted; two supervisors on one
# config never run two producers, and the standby takes over when the
# active one is killed.
. "$(dirname "$0")/lib.sh"

reset_pipeline >/dev/null
fake=$T_DIR/fakebin
mkdir -p "$fake"
ln -s "$BIN/pgrelay-snapshot" "$fake/pgrelay-snapshot"
ln -s "$BIN/pgrelay-producer" "$fake/pgrelay-producer"

# 1. A consumer that dies at once.
printf '#!/bin/sh\necho "consumer that crashes at once" >&2\nexit 3\n' > "$fake/pgrelay-consumer"
chmod +x "$fake/pgrelay-consumer"
T_INTENSITY=3 T_BACKOFF=200
CONF=$(write_config)
start=$SECONDS
PGRELAY_BIN_DIR=$fake "$BIN/pgrelayd" -c "$CONF" > "$T_DIR/loop.log" 2>&1 &
sup=$!
wait_until 60 '! kill -0 $sup 2>/dev/null'
wait "$sup"
is "$?" 1 "pgrelayd exits 1 when a pool crashes too often"
took=$((SECONDS - start))
starts=$(grep -c "started consumer" "$T_DIR/loop.log")
is "$starts" 4 "the crashing consumer was started 4 times (restart_intensity 3, then stopped)"
grep -q "more than 3 crashes of the consumer pool within 30s: the pool is stopped" "$T_DIR/loop.log"
ok $? "the log says the pool is stopped and why"
delays=$(grep -o "restarting in [0-9.]*s" "$T_DIR/loop.log" | grep -o "[0-9.]*" | tr '\n' ' ')
diag "restart delays: $delays"
awk -v d="$delays" 'BEGIN { n = split(d, a, " "); for (i = 2; i <= n; i++) if (a[i] + 0 <= a[i-1] + 0) exit 1; exit n < 3 }'
ok $? "each restart waits longer than the one before (back-off)"
grep -q "exited with code 3" "$T_DIR/loop.log"
ok $? "the exit code is logged"

# 2. A consumer that reports a config error is not restarted at all.
printf '#!/bin/sh\nexit 78\n' > "$fake/pgrelay-consumer"
PGRELAY_BIN_DIR=$fake "$BIN/pgrelayd" -c "$CONF" > "$T_DIR/cfg.log" 2>&1 &
sup=$!
wait_until 30 '! kill -0 $sup 2>/dev/null'
wait "$sup"
is "$?" 1 "pgrelayd exits 1 when the consumers cannot run"
is "$(grep -c "started consumer" "$T_DIR/cfg.log")" 1 "a worker exiting 78 is started once, never restarted"
grep -q "a configuration error; the consumer pool is stopped and not restarted" "$T_DIR/cfg.log"
ok $? "and the log says so"

# 3. Two supervisors on one config: one producer at a time.
reset_pipeline >/dev/null
T_INTENSITY=50 T_CONSUMERS=1
CONF=$(write_config)
sed "s|$T_DIR/run|$T_DIR/run2|" "$CONF" > "$T_DIR/second.conf"
start_worker s1 pgrelayd -c "$CONF"
wait_until 30 'grep -q "holding the producer lock" "$T_DIR/s1.log"'
ok $? "the first supervisor's producer is active"
start_worker s2 pgrelayd -c "$T_DIR/second.conf"
wait_until 30 'grep -q "another producer holds the lock on the source; standing by" "$T_DIR/s2.log"'
ok $? "the second supervisor's producer stands by"
is "$(grep -c "holding the producer lock" "$T_DIR/s2.log")" 0 "only one producer is active"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'h' || i, 'a', DATE '2010-01-01', 'c', 30000 FROM generate_series(1, 300) i"
wait_until 30 same_rows
compare_ab "with two supervisors" =300
wait_until 20 'test "$(group_members)" = 2'
is "$(group_members)" 2 "both supervisors' consumers share the group"

kill -9 "${T_PIDS[s1]}"; wait "${T_PIDS[s1]}" 2>/dev/null; unset "T_PIDS[s1]"
t0=$SECONDS
wait_until 30 'grep -q "holding the producer lock" "$T_DIR/s2.log"'
ok $? "the standby producer takes over after the first supervisor is killed -9 ($((SECONDS - t0)) s)"
qa -c "UPDATE employees SET city = 'after-failover'"
wait_until 30 same_rows
compare_ab "after the failover" =300
stop_worker s2
is "$?" 0 "the second supervisor stops cleanly"
left=$(pgrep -f "$T_DIR/run/active.conf" | wc -l)
is "$left" 0 "no worker of the killed supervisor is left (they stop with it)"
done_testing

#!/usr/bin/env bash
# A long statement is not a hung worker.  The producer's window query can
# outlast supervisor.watchdog_s (a backlog of millions of changes after
# downtime); pgrelayd must not take it for a hang, kill it and loop.  Here
# the window query is held for 3 watchdog periods by a lock on pgrelay_changes (as
# a slow query would be): the producer stays, unkilled, and the changes
# arrive once the query can finish.
. "$(dirname "$0")/lib.sh"

T_WATCHDOG=2
CONF=$(write_config)
reset_pipeline >/dev/null
start_worker sup pgrelayd -c "$CONF"
wait_until 30 'test "$(running_count producer)" = 1 && test "$(running_count consumer)" = 1'
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       VALUES ('before', 'lock', '2008-01-01', 'c', 20000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees")" = 1'
producer=$(child_pids producer)

# Session L writes a change and locks pgrelay_changes; another transaction commits
# (a new snapshot), so the producer's next window query waits on the lock.
mkfifo "$T_DIR/L"
psql "$PGRELAY_SOURCE_DSN" -X -q -v ON_ERROR_STOP=1 < "$T_DIR/L" > "$T_DIR/L.out" 2>&1 &
L=$!
exec 3> "$T_DIR/L"
echo "BEGIN;
      INSERT INTO employees (first_name, last_name, dob, city, salary)
        VALUES ('under', 'lock', '2008-01-01', 'c', 20000);
      LOCK TABLE pgrelay_changes IN ACCESS EXCLUSIVE MODE;" >&3
wait_until 10 'test "$(qa -c "SELECT count(*) FROM pg_locks WHERE relation = '\''pgrelay_changes'\''::regclass AND mode = '\''AccessExclusiveLock'\'' AND granted")" = 1'
ok $? "a session holds pgrelay_changes locked"
qa -c "SELECT txid_current()" >/dev/null
wait_until 10 'test "$(qa -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '\''pgrelay-producer'\'' AND wait_event_type = '\''Lock'\''")" -ge 1'
ok $? "the producer's window query waits on it"
sleep 6
is "$(child_pids producer)" "$producer" "after 3 watchdog periods the same producer runs (pid $producer)"
grep -q "producer 0 (pid $producer) sent no keep-alive" "$T_DIR/sup.log"
ok $((! $?)) "pgrelayd did not take the waiting producer for a hung one"
echo "COMMIT;" >&3
exec 3>&-
wait "$L"
ok $? "the lock is released"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees")" = 2'
compare_ab "after the long query" =2
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

#!/usr/bin/env bash
# Offsets below the log start are never skipped silently.  The consumers
# stop; the producer alone sends 100 changes; the records of partition 0
# are deleted up to its end (what retention does to changes no consumer
# applied in time; DeleteRecords does it at once).  When pgrelayd starts
# again, the member given partition 0 stops that partition with an error
# that says what was lost and how to recover, the other partitions go on,
# and pgrelayctl status and systemd's STATUS= say so.  Then README's
# recovery (a re-snapshot) makes B equal to A again.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'f' || i, 'l' || i, DATE '2008-01-01', 'c', 20000 + i FROM generate_series(1, 10) i"

python3 "$ROOT/tests/integration/notify_listener.py" "$T_DIR/systemd.sock" "$T_DIR/notify.log" &
T_PIDS[listener]=$!
wait_until 5 'test -S "$T_DIR/systemd.sock"'
NOTIFY_SOCKET=$T_DIR/systemd.sock start_worker sup pgrelayd -c "$CONF"
wait_until 60 same_rows
compare_ab "before the gap" =10
stop_worker sup
is "$?" 0 "pgrelayd stopped"

# The producer alone: 100 changes B never applies.
start_worker producer producer -c "$CONF"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'g' || i, 'l' || i, DATE '2008-01-01', 'c', 30000 + i FROM generate_series(1, 100) i"
wait_until 30 'test "$(qa -c "SELECT changes FROM pgrelay_producer_state")" = 100'
is "$(qa -c "SELECT changes FROM pgrelay_producer_state")" 100 "the producer alone sent the 100 new changes"
stop_worker producer

# Partition 0's records deleted up to its end (-1: the high watermark).
kcat -b "$PGRELAY_KAFKA_BROKERS" -X isolation.level=read_committed -C -t "$T_TOPIC" \
    -p 0 -o "$(qb -c "SELECT next_offset FROM pgrelay_offsets WHERE topic = '$T_TOPIC' AND partition = 0")" \
    -e -q -f '%o\n' > "$T_DIR/p0.changes" 2>/dev/null
echo "{\"version\":1,\"partitions\":[{\"topic\":\"$T_TOPIC\",\"partition\":0,\"offset\":-1}]}" > "$T_DIR/delete.json"
java -Xmx128m -cp "$PGRELAY_KAFKA_LIBS/*" org.apache.kafka.tools.DeleteRecordsCommand \
    --bootstrap-server "$PGRELAY_KAFKA_BROKERS" --offset-json-file "$T_DIR/delete.json" \
    > "$T_DIR/delete.out" 2>&1
grep -q "partition: $T_TOPIC-0.*low_watermark: [1-9]" "$T_DIR/delete.out"
ok $? "partition 0's records deleted: $(grep -o 'low_watermark: [0-9]*' "$T_DIR/delete.out")"
stored=$(qb -c "SELECT next_offset FROM pgrelay_offsets WHERE topic = '$T_TOPIC' AND partition = 0")
low=$(grep -o 'low_watermark: [0-9]*' "$T_DIR/delete.out" | grep -o '[0-9]*$')
# the changes among those offsets (the producer's transaction markers
# take offsets too), counted before they were deleted
lost=$(wc -l < "$T_DIR/p0.changes")

NOTIFY_SOCKET=$T_DIR/systemd.sock start_worker sup pgrelayd -c "$CONF"
wait_until 30 'grep -q "partition 0 of $T_TOPIC is STOPPED" "$T_DIR/sup.log"'
ok $? "the member given partition 0 stops it"
grep -F "partition 0 of $T_TOPIC is STOPPED: the changes at offsets ${stored}..$((low - 1)) ($((low - stored)) offsets) were deleted" "$T_DIR/sup.log" |
    grep -q "recover with a re-snapshot"
ok $? "and says which changes were lost (offsets $stored..$((low - 1))) and how to recover" ||
    grep "STOPPED" "$T_DIR/sup.log" | sed 's/^/#   /' >&2
ok "$([ "$lost" -ge 1 ]; echo $?)" "$lost of the producer's changes were in partition 0's deleted offsets"
wait_until 30 'test "$(qb -c "SELECT count(*) FROM employees")" -ge $((110 - lost))'
is "$(qb -c "SELECT count(*) FROM employees")" "$((110 - lost))" \
    "the other partitions' changes are applied; partition 0's lost ones are not"
wait_until 10 'sup_status | grep -q "partitions stopped below the log start 1 (CHANGES LOST: re-snapshot)"'
ok $? "pgrelayctl status says a partition is stopped and changes were lost"
is "$(sup_status --json | jq .partitions_stopped)" 1 "and so does its JSON (partitions_stopped)"
wait_until 10 'grep -q "^STATUS=.*CHANGES LOST: 1 partitions stopped below the log start" "$T_DIR/notify.log"'
ok $? "systemd's STATUS= says it"
grep -q "offset reset.*to BEGINNING" "$T_DIR/sup.log"
ok $((! $?)) "no consumer reset its offset past the gap"

# README's recovery: a re-snapshot into an emptied B.
stop_worker sup
is "$?" 0 "pgrelayd stopped for the recovery"
qb -c "TRUNCATE employees, pgrelay_row_version, pgrelay_offsets, pgrelay_truncate_horizon;
       UPDATE pgrelay_targets SET horizon = 0, truncated_at = NULL WHERE target = 'employees'::regclass"
qa -c "DELETE FROM pgrelay_snapshot_state"
NOTIFY_SOCKET=$T_DIR/systemd.sock start_worker sup pgrelayd -c "$CONF"
wait_until 60 same_rows
compare_ab "after the re-snapshot" =110
versions_match "after the re-snapshot"
is "$(sup_status --json | jq .partitions_stopped)" 0 "no partition is stopped any more"
stop_worker sup
done_testing

#!/usr/bin/env bash
# The topics pgrelay creates get settings that do not lose unconsumed
# changes on their own (cleanup.policy=delete, retention.bytes=-1,
# kafka.retention_ms, kafka.min_insync_replicas, no unclean leader
# election); an existing topic whose settings risk that is named in a
# warning at start; kafka.min_insync_replicas above the replication factor
# is a config error.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
# kafka_keys TEXT: adds TEXT to the kafka group (after its dlq_topic line)
kafka_keys() { sed "s|^  dlq_topic = \"$T_DLQ\";|& $1|"; }
kafka_keys "retention_ms = 86400000; min_insync_replicas = 1;" < "$CONF" > "$T_DIR/k.conf" && mv "$T_DIR/k.conf" "$CONF"
reset_pipeline >/dev/null
grep -q "retention_ms = 86400000" "$CONF"
ok $? "the config sets kafka.retention_ms and kafka.min_insync_replicas"

"$BIN/pgrelay-snapshot" -c "$CONF" >> "$T_DIR/snapshot.log" 2>&1
is "$?" 0 "the snapshot creates the topics"
for topic in "$T_TOPIC" "$T_DLQ"; do
	kafka_topic --describe --topic "$topic" > "$T_DIR/describe.out"
	for want in cleanup.policy=delete retention.ms=86400000 retention.bytes=-1 \
	            min.insync.replicas=1 unclean.leader.election.enable=false; do
		grep -q "Configs:.*$want" "$T_DIR/describe.out" ||
			{ diag "$topic: no $want in: $(grep Configs "$T_DIR/describe.out")"; false; }
	done
	ok $? "$topic is created with delete, 1 day, no size limit, min.insync.replicas 1, no unclean election"
done
grep "WARN" "$T_DIR/snapshot.log" | grep -q "topic $T_TOPIC"
ok $((! $?)) "no warning about the topics it created itself"

# A CDC topic someone else created: compacted, kept one hour, 1 MB.
T_TOPIC="$T_TOPIC.other"
kafka_topic --create --topic "$T_TOPIC" --partitions 4 --config cleanup.policy=compact \
    --config retention.ms=3600000 --config retention.bytes=1048576 > "$T_DIR/create.out"
ok $? "a CDC topic created by hand: compacted, one hour, 1 MB"
CONF=$(write_config)
qa -c "DELETE FROM pgrelay_snapshot_state" -c "DELETE FROM pgrelay_producer_state"
"$BIN/pgrelay-snapshot" -c "$CONF" > "$T_DIR/snapshot2.log" 2>&1
is "$?" 0 "the snapshot runs on it"
for want in "topic $T_TOPIC has cleanup.policy=compact: compaction deletes a row's older changes" \
            "topic $T_TOPIC keeps records for 3600000 ms (retention.ms), less than kafka.retention_ms (-1)" \
            "topic $T_TOPIC deletes records beyond 1048576 bytes per partition"; do
	grep -F "WARN" "$T_DIR/snapshot2.log" | grep -qF "$want"
	ok $? "warned: ${want#topic $T_TOPIC }"
done

# min.insync.replicas above the replication factor: a config error.
kafka_keys "min_insync_replicas = 2;" < "$CONF" > "$T_DIR/isr.conf"
"$BIN/pgrelayd" -c "$T_DIR/isr.conf" -t > "$T_DIR/isr.out" 2>&1
is "$?" 78 "kafka.min_insync_replicas 2 with replication_factor 1: pgrelayd -t exits 78"
grep -q "isr.conf:[0-9]*: kafka.min_insync_replicas: 2 is above kafka.replication_factor 1" "$T_DIR/isr.out"
ok $? "naming file, line and key"
done_testing

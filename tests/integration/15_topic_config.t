#!/usr/bin/env bash
# A topic that exists with another partition count than the config says is
# a configuration error for every worker that needs it: it exits 78 (not
# restarted) at once, naming the key to change, kafka.partitions for the
# CDC topic and etl.partitions for the ETL topic; a DLQ topic created by
# someone else with more partitions is used as it is.
. "$(dirname "$0")/lib.sh"

CONF=$(write_config)
reset_pipeline >/dev/null

# run_worker KIND: the worker's exit code, or "still running after 30 s"
run_worker() {
	local kind=$1 pid n=0
	"$BIN/pgrelay-$kind" -c "$CONF" >> "$T_DIR/$kind.log" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && [ $n -lt 150 ]; do sleep 0.2; n=$((n + 1)); done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"; wait "$pid" 2>/dev/null
		echo "still running after 30 s"
	else
		wait "$pid"; echo $?
	fi
}

# The CDC topic with 2 partitions, kafka.partitions = 4; the DLQ with 3.
kafka_topic --create --topic "$T_TOPIC" --partitions 2 > "$T_DIR/create.out"
kafka_topic --create --topic "$T_DLQ" --partitions 3 >> "$T_DIR/create.out"
ok $? "created the CDC topic with 2 partitions and the DLQ with 3"
for kind in snapshot producer consumer; do
	is "$(run_worker $kind)" 78 "the $kind exits 78 on the CDC topic's partition count"
	grep -q "topic $T_TOPIC exists with 2 partitions but kafka.partitions is 4; set kafka.partitions to 2" "$T_DIR/$kind.log"
	ok $? "and names kafka.partitions"
done

# With kafka.partitions = 2 the CDC workers run, on a DLQ of 3 partitions.
T_PARTITIONS=2 CONF=$(write_config)
is "$(run_worker snapshot)" 0 "with kafka.partitions = 2 the snapshot runs, on a DLQ created with 3 partitions"

# The ETL topic with 2 partitions, etl.partitions = 3.
kafka_topic --create --topic "$T_TOPIC.etl" --partitions 2 >> "$T_DIR/create.out"
ok $? "created the ETL topic with 2 partitions"
for kind in etl_producer etl_loader; do
	is "$(run_worker $kind)" 78 "the $kind exits 78 on the ETL topic's partition count"
	grep -q "topic $T_TOPIC.etl exists with 2 partitions but etl.partitions is 3; set etl.partitions to 2" "$T_DIR/$kind.log"
	ok $? "and names etl.partitions, not kafka.partitions"
done
done_testing

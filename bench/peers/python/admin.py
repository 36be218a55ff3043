#!/usr/bin/env python3
"""admin.py - creates and deletes a run's Kafka topic and consumer group
with confluent_kafka.admin (the broker does not auto-create topics).

    admin.py create-topic --topic T [--partitions 4]
    admin.py delete --topic T --group G
"""
import argparse
import os
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 30


def error_code(exc):
    err = exc.args[0] if exc.args else None
    return err.code() if isinstance(err, KafkaError) else None


def create_topic(admin, topic, partitions):
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                 request_timeout=TIMEOUT_S)[topic]
    try:
        future.result()
        print(f"admin: created topic {topic} ({partitions} partitions)")
    except KafkaException as e:
        if error_code(e) != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def delete_run(admin, topic, group):
    """Deletes the group, then the topic; either may already be gone."""
    try:
        admin.delete_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result()
        print(f"admin: deleted group {group}")
    except KafkaException as e:
        if error_code(e) != KafkaError.GROUP_ID_NOT_FOUND:
            raise
    try:
        admin.delete_topics([topic], request_timeout=TIMEOUT_S)[topic].result()
        print(f"admin: deleted topic {topic}")
    except KafkaException as e:
        if error_code(e) != KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise


def main():
    p = argparse.ArgumentParser(description="create or delete a run's topic and group")
    p.add_argument("command", choices=["create-topic", "delete"])
    p.add_argument("--brokers", default=os.environ.get("PGRELAY_KAFKA_BROKERS"))
    p.add_argument("--topic", required=True)
    p.add_argument("--group")
    p.add_argument("--partitions", type=int, default=4)
    args = p.parse_args()
    if not args.brokers:
        p.error("--brokers or PGRELAY_KAFKA_BROKERS is required")
    admin = AdminClient({"bootstrap.servers": args.brokers})
    try:
        if args.command == "create-topic":
            create_topic(admin, args.topic, args.partitions)
        else:
            if not args.group:
                p.error("delete needs --group")
            delete_run(admin, args.topic, args.group)
    except KafkaException as e:
        print(f"admin: {args.command} {args.topic}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

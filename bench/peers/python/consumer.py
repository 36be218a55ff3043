#!/usr/bin/env python3
"""consumer.py - the seed's consumer: reads the changes from the Kafka topic
in a consumer group (offsets committed automatically, the client's default)
and applies each to employees on B with psycopg, one database transaction
per message: insert and update as an upsert, delete as a DELETE.

The offsets and the rows are committed separately, so a crash can apply a
message again or, with the auto-commit, skip one; a graceful stop (SIGTERM)
commits the offsets of every message applied.
"""
import argparse
import datetime
import json
import logging
import os
import signal
import sys
import time

import psycopg
from confluent_kafka import Consumer, KafkaError

STATS_EVERY_S = 10.0

UPSERT = """
    INSERT INTO employees (emp_id, first_name, last_name, dob, city, salary)
    VALUES (%(emp_id)s, %(first_name)s, %(last_name)s, %(dob)s, %(city)s, %(salary)s)
    ON CONFLICT (emp_id) DO UPDATE
       SET first_name = EXCLUDED.first_name,
           last_name  = EXCLUDED.last_name,
           dob        = EXCLUDED.dob,
           city       = EXCLUDED.city,
           salary     = EXCLUDED.salary
"""
DELETE = "DELETE FROM employees WHERE emp_id = %(emp_id)s"

log = logging.getLogger("consumer")
stop_requested = False


def handle_stop_signal(signum, frame):
    global stop_requested
    stop_requested = True


def decode(value):
    """The change in a message, with dob as a date; raises ValueError if bad."""
    change = json.loads(value)
    if change.get("action") not in ("c", "u", "d") or not isinstance(change.get("emp_id"), int):
        raise ValueError("no valid action or emp_id")
    if change.get("dob") is not None:
        change["dob"] = datetime.date.fromisoformat(change["dob"])
    return change


def apply_change(conn, change):
    """Applies one change to B and commits it."""
    with conn.transaction():
        conn.execute(DELETE if change["action"] == "d" else UPSERT, change)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default=os.environ.get("PGRELAY_KAFKA_BROKERS"))
    p.add_argument("--dsn", default=os.environ.get("PGRELAY_TARGET_DSN"))
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    args = p.parse_args()
    if not args.brokers or not args.dsn:
        p.error("--brokers and --dsn (or PGRELAY_KAFKA_BROKERS and PGRELAY_TARGET_DSN) are required")
    return args


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s consumer[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, handle_stop_signal)
    signal.signal(signal.SIGINT, handle_stop_signal)

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "client.id": "pypeer-consumer",
    })
    consumer.subscribe([args.topic])
    applied = skipped = 0
    next_stats = time.monotonic() + STATS_EVERY_S
    log.info("started: topic %s, group %s", args.topic, args.group)

    try:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            while not stop_requested:
                msg = consumer.poll(1.0)
                if time.monotonic() >= next_stats:
                    log.info("applied %d changes, skipped %d", applied, skipped)
                    next_stats = time.monotonic() + STATS_EVERY_S
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().fatal():
                        log.error("fatal Kafka error: %s", msg.error())
                        return 1
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("Kafka error: %s", msg.error())
                    continue
                try:
                    change = decode(msg.value())
                except (ValueError, TypeError) as e:
                    log.warning("skipping undecodable message at %s[%d]@%d: %s",
                                msg.topic(), msg.partition(), msg.offset(), e)
                    skipped += 1
                    continue
                try:
                    apply_change(conn, change)
                except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as e:
                    log.warning("B refused change %s: %s", change.get("change_id"), e)
                    skipped += 1
                    continue
                applied += 1
    finally:
        consumer.close()  # commits the offsets of what was applied, leaves the group
    log.info("stopped: applied %d changes, skipped %d", applied, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""producer.py - the seed's producer: polls A's change table pgrelay_changes
for changes of employees with a change_id greater than the last one it sent,
sends each as JSON to a Kafka topic keyed by emp_id, and remembers the last
change_id sent in a state file once Kafka has acknowledged the batch.

The naive approach on purpose: a change id is taken from a sequence when the
trigger runs, not when its transaction commits, so a transaction that
commits after a later one has been read is skipped for good.
"""
import argparse
import json
import logging
import os
import signal
import sys
import time

import psycopg
from confluent_kafka import Producer

BATCH_ROWS = 1000
IDLE_SLEEP_S = 0.1
STATS_EVERY_S = 10.0

# employees' changes (rel: its id in pgrelay_tables); the row json (the new
# row, or the old one for a delete) back into employees' columns.
SELECT_CHANGES = """
    SELECT c.change_id, c.action::text, e.emp_id, e.first_name, e.last_name,
           e.dob, e.city, e.salary
      FROM (SELECT change_id, action, row
              FROM pgrelay_changes
             WHERE rel = (SELECT id FROM pgrelay_tables
                           WHERE relid = to_regclass('employees'))
               AND change_id > %s
             ORDER BY change_id
             LIMIT %s) c,
           json_populate_record(NULL::employees, c.row) e
     ORDER BY c.change_id
"""

log = logging.getLogger("producer")
stop_requested = False


def handle_stop_signal(signum, frame):
    global stop_requested
    stop_requested = True


def read_last_id(path):
    """The last change_id sent, or 0 if nothing was sent yet."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text else 0


def write_last_id(path, last_id):
    """Replaces the state file atomically: a crash leaves the old or the new."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{last_id}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def change_to_json(row):
    change_id, action, emp_id, first_name, last_name, dob, city, salary = row
    return json.dumps({
        "change_id": change_id,
        "action": action,
        "emp_id": emp_id,
        "first_name": first_name,
        "last_name": last_name,
        "dob": dob.isoformat() if dob is not None else None,
        "city": city,
        "salary": salary,
    })


def send(producer, topic, row, on_delivery):
    """Queues one change; waits for room if the local queue is full."""
    while True:
        try:
            producer.produce(topic, key=str(row[2]), value=change_to_json(row),
                             on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.5)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", default=os.environ.get("PGRELAY_KAFKA_BROKERS"))
    p.add_argument("--dsn", default=os.environ.get("PGRELAY_SOURCE_DSN"))
    p.add_argument("--topic", required=True)
    p.add_argument("--state", required=True, help="file holding the last change_id sent")
    args = p.parse_args()
    if not args.brokers or not args.dsn:
        p.error("--brokers and --dsn (or PGRELAY_KAFKA_BROKERS and PGRELAY_SOURCE_DSN) are required")
    return args


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s producer[%(process)d] %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, handle_stop_signal)
    signal.signal(signal.SIGINT, handle_stop_signal)

    last_id = read_last_id(args.state)
    failures = []

    def on_delivery(err, msg):
        if err is not None:
            failures.append(err)

    producer = Producer({"bootstrap.servers": args.brokers, "client.id": "pypeer-producer"})
    sent = 0
    next_stats = time.monotonic() + STATS_EVERY_S
    log.info("started: topic %s, resuming after change_id %d", args.topic, last_id)

    with psycopg.connect(args.dsn, autocommit=True) as conn:
        while not stop_requested:
            rows = conn.execute(SELECT_CHANGES, (last_id, BATCH_ROWS)).fetchall()
            if not rows:
                producer.poll(0)
                time.sleep(IDLE_SLEEP_S)
                continue
            for row in rows:
                send(producer, args.topic, row, on_delivery)
            producer.flush()
            if failures:
                # Nothing is remembered: the whole batch is read and sent again.
                log.error("%d of %d messages not delivered (first: %s); sending the batch again",
                          len(failures), len(rows), failures[0])
                failures.clear()
                time.sleep(1)
                continue
            last_id = rows[-1][0]
            write_last_id(args.state, last_id)
            sent += len(rows)
            if time.monotonic() >= next_stats:
                log.info("sent %d changes, last change_id %d", sent, last_id)
                next_stats = time.monotonic() + STATS_EVERY_S

    producer.flush()
    log.info("stopped: sent %d changes, last change_id %d", sent, last_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())

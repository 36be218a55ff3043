#!/usr/bin/env bash
# The bench's load generator under contention: four writers run
# transactions of ten updates over the same twenty rows, so they deadlock.
# A transaction the server rolls back must not be logged (the latency
# figures would count changes that never happened) and must not stop the
# writer.  Checked: every row's salary on A (+1 per update) equals 50000
# plus the updates logged for it, and each logged version is unique.
. "$(dirname "$0")/lib.sh"

reset_pipeline >/dev/null
ok $? "pipeline tables reset"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'lg', 'row', DATE '2008-01-01', 'c' || i, 50000 FROM generate_series(1, 20) i"
ok $? "20 rows on A"

"$BIN/loadgen" -r 0 -s 3 -w 4 -t 10 -m 0:1:0 -x lg- -o "$T_DIR/load.csv" 2> "$T_DIR/loadgen.err"
is "$?" 0 "loadgen exits 0"
grep -q "rolled back by a deadlock" "$T_DIR/loadgen.err"
ok $? "the writers deadlocked and went on (stderr: $(grep -c deadlock "$T_DIR/loadgen.err") writers say so)"
logged=$(cat "$T_DIR"/load.csv.* | wc -l)
ok $(( logged > 0 ? 0 : 1 )) "$logged updates logged"
is "$(cat "$T_DIR"/load.csv.* | awk -F, '$2 == "u" { n[$3]++ } END { for (k in n) print k "|" 50000 + n[k] }' | sort)" \
    "$(qa -c "SELECT emp_id, salary FROM employees WHERE salary > 50000" | sort)" \
    "each row's salary on A is 50000 plus its logged updates"
is "$(cat "$T_DIR"/load.csv.* | awk -F, '{ print $3 "," $5 }' | sort | uniq -d | wc -l)" 0 \
    "no version is logged twice for a row"
done_testing

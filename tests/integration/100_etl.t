#!/usr/bin/env bash
# The ETL pipeline under pgrelayd: the shipped CSV's totals and row counts
# per department equal an independent SQL computation over a raw COPY of
# the file; the same file dropped again or renamed is not loaded twice;
# malformed records go to the DLQ with file, line and reason (CRLF, BOM,
# quotes, embedded newlines handled); kill -9 of the loader and of the
# producer in the middle of a large file leaves the totals exact.
. "$(dirname "$0")/lib.sh"

CSV=$ROOT/data/Employee_Salaries.csv
T_ETL=true T_ETL_BATCH=500 T_LOADERS=2 T_CONSUMERS=1
CONF=$(write_config)
reset_pipeline >/dev/null
qb -c "TRUNCATE department_employee, department_employee_salary, etl_files RESTART IDENTITY"
SPOOL=$T_DIR/spool

# The independent computation: SQL over a raw COPY of the file.
qb -c "CREATE TABLE IF NOT EXISTS t_raw_csv (department text, division text, pcn text,
         title text, flsa text, hire text, in_title text, salary text)" \
   -c "TRUNCATE t_raw_csv" \
   -c "\\copy t_raw_csv FROM '$CSV' CSV HEADER"
expected() {	# expected FACTOR: "dept|count|total" lines for FACTOR copies
	qb -c "SELECT department, count(*) * $1, sum(floor(salary::numeric))::bigint * $1
	         FROM t_raw_csv
	        WHERE department IN ('ECC', 'CIT', 'EMS') AND salary <> ''
	          AND to_date(hire, 'DD-Mon-YYYY') >= DATE '2010-01-01'
	        GROUP BY department ORDER BY department"
}
loaded() {
	qb -c "SELECT s.department, (SELECT count(*) FROM department_employee e
	                              WHERE e.department = s.department), s.total_salary
	         FROM department_employee_salary s ORDER BY s.department"
}
etl_dlq() {
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl.dlq" -o beginning -e -q \
	    -f '%h\n' 2>/dev/null
}
# The ETL topic's records as "file|line" lines.
etl_topic() {
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl" -o beginning -e -q \
	    -f '%s\n' 2>/dev/null | jq -r '.file + "|" + (.line | tostring)'
}
# csv_lines FILE wanted|nosalary: the first line of each record of FILE
# that the ETL must load (department ECC, CIT or EMS, hired in 2010 or
# later, with a salary), or that has no salary; read by Python's csv
# module, independently of the loader's libcsv.
csv_lines() {
	python3 - "$1" "$2" <<'PY'
import csv, datetime, sys
with open(sys.argv[1], newline='', encoding='utf-8-sig') as f:
    r = csv.reader(f)
    next(r)
    prev = r.line_num
    for rec in r:
        start, prev = prev + 1, r.line_num
        if len(rec) != 8:
            continue
        if sys.argv[2] == 'nosalary':
            if rec[7] == '':
                print(start)
        elif rec[0] in ('ECC', 'CIT', 'EMS') and rec[7] != '' and \
                datetime.datetime.strptime(rec[5], '%d-%b-%Y') >= datetime.datetime(2010, 1, 1):
            print(start)
PY
}
is "$(qb -c "SELECT count(*) FROM t_raw_csv")" 6954 "COPY reads the shipped file's 6954 rows"

start_worker sup pgrelayd -c "$CONF"
cp "$CSV" "$SPOOL/.salaries.csv.part" && mv "$SPOOL/.salaries.csv.part" "$SPOOL/salaries.csv"
wait_until 60 'test "$(loaded)" = "$(expected 1)"'
is "$(loaded)" "$(expected 1)" "per-department counts and totals equal the SQL computation"
diag "$(expected 1 | tr '\n' ' ')"
wait_until 10 'test -f "$SPOOL/done/salaries.csv"'
ok $? "the done file is moved to done/"
is "$(qb -c "SELECT state, rows_sent, rows_rejected FROM etl_files")" "done|$(expected 1 | awk -F'|' '{n += $2} END {print n}')|8" \
    "etl_files records the file as done, with its sent and rejected counts"
wait_until 20 'test "$(etl_dlq | grep -c "reason=missing field Salary")" = 8'
is "$(etl_dlq | grep -c "reason=missing field Salary")" 8 \
    "the 8 records without a salary are in the DLQ"
etl_dlq | grep "reason=missing field Salary" | head -n 1 | grep -q "__pgrelay.errors.file=salaries.csv,__pgrelay.errors.line=[0-9]"
ok $? "with the file name and line"

# The same content again, under another name: not loaded twice.
cp "$CSV" "$SPOOL/renamed.csv"
wait_until 20 'test -f "$SPOOL/done/renamed.csv"'
grep -q "renamed.csv has the same content as salaries.csv" "$T_DIR/sup.log"
ok $? "a renamed copy is recognised by its content"
sleep 1
is "$(loaded)" "$(expected 1)" "and the totals do not change"
etl_topic > "$T_DIR/etl.records"
is "$(grep -c '^renamed.csv|' "$T_DIR/etl.records")" 0 "the topic holds no record of the renamed copy"
is "$(grep -c '^salaries.csv|' "$T_DIR/etl.records")|$(sort -u "$T_DIR/etl.records" | grep -c '^salaries.csv|')" \
    "$(qb -c "SELECT rows_sent FROM etl_files WHERE name = 'salaries.csv'")|$(qb -c "SELECT rows_sent FROM etl_files WHERE name = 'salaries.csv'")" \
    "and each record of the first copy once (rows_sent of salaries.csv)"

# A crafted file: BOM, CRLF, quotes, embedded comma and newline, bad rows.
before=$(loaded)
printf '\xef\xbb\xbfDepartment,Department-Division,PCN,Position Title,FLSA Status,Initial Hire Date,Date in Title,Salary\r\n' > "$T_DIR/crafted.csv"
printf 'ECC,"ECC 001, Ops",X1,"Analyst ""Senior""",Exempt,01-Jan-2015,,50000.99\r\n' >> "$T_DIR/crafted.csv"
printf 'ECC,ECC 001,X2,Analyst,Exempt,31-Feb-2015,,50000\r\n' >> "$T_DIR/crafted.csv"
printf 'ECC,ECC 001,X3,Analyst,Exempt,01-Jan-2015,,12x\r\n' >> "$T_DIR/crafted.csv"
printf 'ECC,ECC 001,X4,Analyst\r\n' >> "$T_DIR/crafted.csv"
printf 'CIT,CIT 002,X5,Dev,Exempt,15-Mar-2009,,70000\r\n' >> "$T_DIR/crafted.csv"
printf 'EMS,"EMS 003\nsecond line",X6,Medic,Exempt,02-Feb-2020,,60000.5' >> "$T_DIR/crafted.csv"
mv "$T_DIR/crafted.csv" "$SPOOL/crafted.csv"
wait_until 30 'test -f "$SPOOL/done/crafted.csv"'
wait_until 20 'test "$(qb -c "SELECT count(*) FROM department_employee WHERE source_file = '\''crafted.csv'\''")" = 2'
is "$(qb -c "SELECT department, department_division, position_title, hire_date, salary, source_line
               FROM department_employee WHERE source_file = 'crafted.csv' ORDER BY source_line" | tr '\n' ';')" \
    "ECC|ECC 001, Ops|Analyst \"Senior\"|2015-01-01|50000|2;EMS|EMS 003;second line|Medic|2020-02-02|60000|7;" \
    "quoted fields, CRLF, BOM and an embedded newline load right; salaries rounded down"
after_ecc=$(qb -c "SELECT total_salary FROM department_employee_salary WHERE department = 'ECC'")
before_ecc=$(echo "$before" | awk -F'|' '$1 == "ECC" {print $3}')
is "$((after_ecc - before_ecc))" 50000 "the ECC total grew by exactly the loaded salary"
wait_until 20 'test "$(etl_dlq | grep -c "file=crafted.csv")" = 3'
for want in '3#bad date "31-Feb-2015" in Initial Hire Date (want DD-Mon-YYYY)' \
            '4#bad number "12x" in Salary' \
            '5#wrong column count: 4, want 8'; do
	line=${want%%#*} reason=${want#*#}
	etl_dlq | grep "file=crafted.csv" | grep -F "reason=$reason," | grep -q "line=$line$"
	ok $? "DLQ: crafted.csv line $line: $reason"
done

# A large file (the shipped rows 20 times) with kill -9 of the producer
# and of a loader in the middle.
{ head -n 1 "$CSV"; for i in $(seq 1 20); do tail -n +2 "$CSV"; echo; done; } > "$T_DIR/big.csv"
before=$(loaded)
mv "$T_DIR/big.csv" "$SPOOL/big.csv"
wait_until 60 'test "$(qb -c "SELECT coalesce(max(last_line), 0) FROM etl_files WHERE name = '\''big.csv'\''")" -ge 20000'
kill_child "$(child_pids etl_producer)"
ok $? "killed the ETL producer -9 at line $(qb -c "SELECT last_line FROM etl_files WHERE name = 'big.csv'")"
sleep 2
kill_child "$(child_pids etl_loader | head -n 1)"
ok $? "killed an ETL loader -9"
wait_until 180 'test -f "$SPOOL/done/big.csv"'
ok $? "the large file finishes after the restarts"
grep -q "big.csv: resuming after line" "$T_DIR/sup.log"
ok $? "the restarted producer resumed the file"
want=$(paste -d'|' <(echo "$before") <(expected 20) | awk -F'|' '{print $1 "|" $2 + $5 "|" $3 + $6}')
wait_until 60 'test "$(loaded)" = "$want"'
is "$(loaded)" "$want" "totals and counts exact after kill -9 of producer and loader"
csv_lines "$SPOOL/done/big.csv" wanted > "$T_DIR/big.wanted"
qb -c "SELECT source_line FROM department_employee WHERE source_file = 'big.csv'
        ORDER BY source_line" > "$T_DIR/big.loaded"
cmp -s "$T_DIR/big.wanted" "$T_DIR/big.loaded"
ok $? "the lines loaded from big.csv are the $(wc -l < "$T_DIR/big.wanted") wanted lines, each once" ||
    diff "$T_DIR/big.wanted" "$T_DIR/big.loaded" | head -n 5 | sed 's/^/#   /' >&2
csv_lines "$SPOOL/done/big.csv" nosalary > "$T_DIR/big.nosalary"
wait_until 20 'test "$(etl_dlq | grep -F "reason=missing field Salary," | grep -c "file=big.csv,")" -ge "$(wc -l < "$T_DIR/big.nosalary")"'
etl_dlq | grep -F "reason=missing field Salary," | grep "file=big.csv," |
    sed 's/.*line=\([0-9]*\).*/\1/' | sort -un > "$T_DIR/big.dlq"
cmp -s "$T_DIR/big.nosalary" "$T_DIR/big.dlq"
ok $? "each of the $(wc -l < "$T_DIR/big.nosalary") lines of big.csv without a salary is in the DLQ, with its line" ||
    diff "$T_DIR/big.nosalary" "$T_DIR/big.dlq" | head -n 5 | sed 's/^/#   /' >&2
is "$(qb -c "SELECT state, rows_sent, rows_rejected FROM etl_files WHERE name = 'big.csv'")" \
    "done|$(wc -l < "$T_DIR/big.wanted")|$(wc -l < "$T_DIR/big.nosalary")" \
    "etl_files counts big.csv's records sent and rejected exactly, across the kills"

stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
qb -c "DROP TABLE t_raw_csv"
done_testing

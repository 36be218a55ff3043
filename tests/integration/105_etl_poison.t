#!/usr/bin/env bash
# Poison records and files in the ETL pipeline (issue 14, items 2 and 3).
# Each file below holds good rows around one poison record; for each:
# the file ends in done/ (failed/ when it cannot be recorded at all) and is
# never retried, the poison record is in the DLQ with file, line and
# reason (and a DLQ message that itself fits), and the good rows of the
# same file load, no more: a wanted record with a byte that is not UTF-8;
# a record of 2 MB (over etl.max_record_bytes, and, with that limit
# raised, over Kafka's message size); a NUL byte inside a field (not
# truncated and loaded); a stray quote that would swallow the lines after
# it (a bound on a record's lines; a quote closed a few lines later; one
# left open at the end of the file; a resume after a restart in such a
# file); a file whose name is not UTF-8 (failed/, logged).  etl_files counts as sent exactly the records Kafka
# acknowledged, and the totals per department are exact.
. "$(dirname "$0")/lib.sh"

T_ETL=true T_ETL_BATCH=20 T_LOADERS=1 T_CONSUMERS=1
CONF=$(write_config)
reset_pipeline >/dev/null
qb -c "TRUNCATE department_employee, department_employee_salary, etl_files RESTART IDENTITY"
SPOOL=$T_DIR/spool
HEADER='Department,Department-Division,PCN,Position Title,FLSA Status,Initial Hire Date,Date in Title,Salary'
declare -A NLINES=()
: > "$T_DIR/want"	# "file|line|department|salary" of every row that must load

# new_file FILE: a CSV with the header, built in $T_DIR, dropped by drop.
new_file() { printf '%s\n' "$HEADER" > "$T_DIR/$1"; NLINES[$1]=1; }
# good FILE DEPT SALARY YEAR: a well-formed record (salary SALARY.75),
# wanted when DEPT is ECC, CIT or EMS and YEAR is 2010 or later.
good() {
	local f=$1 d=$2 s=$3 y=$4 n=$((NLINES[$1] + 1))
	printf '%s,%s 001,P%d,Analyst %d,Exempt,01-Jan-%d,,%d.75\n' "$d" "$d" "$n" "$n" \
	    "$y" "$s" >> "$T_DIR/$f"
	NLINES[$f]=$n
	case $d in ECC | CIT | EMS) [ "$y" -lt 2010 ] || echo "$f|$n|$d|$s" >> "$T_DIR/want" ;; esac
}
# goods FILE N: N good records, two of three wanted.
goods() {
	for i in $(seq 1 "$2"); do
		case $((i % 3)) in
		0) good "$1" POL $((40000 + i)) 2015 ;;
		1) good "$1" ECC $((50000 + i)) 2012 ;;
		2) good "$1" CIT $((60000 + i)) 2020 ;;
		esac
	done
}
# raw FILE LINES FORMAT [ARGS]: text that is LINES physical lines, as given.
raw() {
	local f=$1 n=$2; shift 2
	# shellcheck disable=SC2059
	printf "$@" >> "$T_DIR/$f"
	NLINES[$f]=$((NLINES[$f] + n))
}
drop() { mv "$T_DIR/$1" "$SPOOL/$1"; }

etl_dlq() {	# the ETL DLQ as "headers|value size" lines
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl.dlq" -o beginning -e -q \
	    -f '%h|%S\n' 2>/dev/null
}
# dlq_entry FILE LINE: the DLQ entries for that record (the producer's
# headers: stage, reason, file, line).
dlq_entry() { etl_dlq | grep -F "__pgrelay.errors.file=$1,__pgrelay.errors.line=$2|"; }
etl_topic() {	# the ETL topic's records as "file|line" lines
	kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl" -o beginning -e -q \
	    -f '%s\n' 2>/dev/null | jq -r '.file + "|" + (.line | tostring)'
}
loaded_lines() {
	qb -c "SELECT source_line FROM department_employee WHERE source_file = '$1' ORDER BY 1"
}
want_lines() { awk -F'|' -v f="$1" '$1 == f {print $2}' "$T_DIR/want"; }

# check_file FILE LINE REASON: the file is done and was not retried, the
# record at LINE is in the DLQ with REASON (part of it) in a message of at
# most 64 KB, the file's wanted lines and no others loaded, and etl_files
# counts the records Kafka acknowledged (on the topic, each once) and
# the DLQ's entries for the file.
check_file() {
	local f=$1 line=$2 reason=$3 entry size
	wait_until 30 "test -f '$SPOOL/done/$f'"
	ok $? "$f: moved to done/" || ls "$SPOOL" "$SPOOL"/* | sed 's/^/#   /'
	is "$(grep -c "etl_producer.*: $f: \(loading\|resuming\|.*resumes from its last checkpoint\)" \
	    "$T_DIR/sup.log")" 1 "$f: loaded in one go, never retried"
	wait_until 20 "dlq_entry '$f' '$line' | grep -qF -- '$reason'"
	entry=$(dlq_entry "$f" "$line" | grep -F -- "$reason" | head -n 1)
	[ -n "$entry" ]
	ok $? "$f: line $line is in the DLQ with file, line and reason '$reason'" ||
	    etl_dlq | grep -F "file=$f," | cut -c1-300 | sed 's/^/#   /'
	size=${entry##*|}
	[ -n "$entry" ] && [ "$size" -le 65536 ]
	ok $? "$f: and that DLQ message fits (${size:-no} bytes)"
	wait_until 20 "test \"\$(loaded_lines '$f')\" = \"\$(want_lines '$f')\""
	is "$(loaded_lines "$f" | tr '\n' ' ')" "$(want_lines "$f" | tr '\n' ' ')" \
	    "$f: the $(want_lines "$f" | wc -l) wanted lines load, no others"
	etl_topic > "$T_DIR/etl.records"
	is "$(qb -c "SELECT state, rows_sent, rows_rejected FROM etl_files WHERE name = '$f'")" \
	    "done|$(grep -c "^$f|" "$T_DIR/etl.records")|$(etl_dlq | grep -c "__pgrelay.errors.file=$f,")" \
	    "$f: etl_files counts as sent the records Kafka acknowledged, and the rejected ones"
	is "$(grep "^$f|" "$T_DIR/etl.records" | sort | uniq -d | wc -l)" 0 \
	    "$f: each record on the topic once"
}

start_worker sup pgrelayd -c "$CONF"

# 1. A wanted record with a byte that is not UTF-8 (Latin-1 e-acute): the
# old producer's json_pack failed with an empty error, every poll.  A
# record outside the filter with such a byte is not sent, so not rejected.
new_file utf8.csv
goods utf8.csv 4
raw utf8.csv 1 'ECC,ECC 001,P6,Analyste d\351l\351gu\351,Exempt,01-Jan-2015,,50000\n'
raw utf8.csv 1 'POL,POL 001 Pr\351fecture,P7,Agent,Exempt,01-Jan-2015,,50000\n'
goods utf8.csv 30
drop utf8.csv
check_file utf8.csv 6 "Position Title is not valid UTF-8"
is "$(dlq_entry utf8.csv 7 | wc -l)" 0 "utf8.csv: a filtered record with such a byte is not rejected"

# 2. A NUL byte inside a field: the old producer cut the field there and
# loaded the record.  The record is rejected, whether wanted or not.
new_file nul.csv
goods nul.csv 2
raw nul.csv 1 'ECC,ECC 001,P4,Ana\000lyst,Exempt,01-Jan-2015,,50000\n'
goods nul.csv 5
raw nul.csv 1 'POL,POL\000 001,P10,Agent,Exempt,01-Jan-2015,,50000\n'
goods nul.csv 3
drop nul.csv
check_file nul.csv 4 "NUL byte in Position Title"
wait_until 10 'dlq_entry nul.csv 10 | grep -qF "reason=NUL byte in Department-Division"'
ok $? "nul.csv: a NUL byte in a record outside the filter is rejected too"

# 3. A stray quote followed by many lines without one: the old producer
# read the rest of the file as one record.  The record is bounded by
# etl.max_record_lines (10 by default), rejected, and reading resumes at
# its next line.
new_file quote.csv
goods quote.csv 3
raw quote.csv 1 'ECC,"ECC 001,P5,Analyst,Exempt,01-Jan-2015,,50000\n'
goods quote.csv 150
drop quote.csv
check_file quote.csv 5 "record not closed within 10 lines"

# 4. A stray quote that a quoted field closes 3 lines later (a record of
# the wrong column count over 4 lines), and one left open at the end of
# the file: each rejected with its first line, the lines after it read
# again as records.
new_file quote2.csv
goods quote2.csv 2
raw quote2.csv 1 'ECC,"ECC 001,P4,Analyst,Exempt,01-Jan-2015,,50000\n'
goods quote2.csv 2
raw quote2.csv 1 'CIT,"CIT 001, Ops",P7,Developer,Exempt,01-Jan-2018,,70000.5\n'
echo "quote2.csv|7|CIT|70000" >> "$T_DIR/want"
goods quote2.csv 5
raw quote2.csv 1 'EMS,"EMS 001,P13,Medic,Exempt,01-Jan-2019,,40000\n'
goods quote2.csv 3
drop quote2.csv
check_file quote2.csv 4 "an unbalanced quote?"
wait_until 10 'dlq_entry quote2.csv 13 | grep -qF "an unbalanced quote?"'
ok $? "quote2.csv: a quote left open at the end of the file: line 13 in the DLQ"

# 5. A file whose name is not valid UTF-8: B refuses it as text (SQLSTATE
# 22021) and the old producer retried it every poll.  It cannot be
# recorded, so it goes to failed/, with the reason logged.
BAD=$(printf 'caf\351.csv')
new_file "$BAD"
goods "$BAD" 5
# nothing of it loads: not its wanted rows either
grep -v "^$BAD|" "$T_DIR/want" > "$T_DIR/want.tmp" && mv "$T_DIR/want.tmp" "$T_DIR/want"
drop "$BAD"
wait_until 20 "test -f \"\$SPOOL/failed/\$BAD\""
ok $? "a file whose name is not UTF-8 is moved to failed/"
grep -q 'caf\\xe9.csv.*not valid UTF-8.*moved to failed/' "$T_DIR/sup.log"
ok $? "with the reason logged (the name's bytes escaped)" ||
    grep -a caf "$T_DIR/sup.log" | tail -n 3 | sed 's/^/#   /'
is "$(qb -c "SELECT count(*) FROM etl_files WHERE name LIKE 'caf%'")" 0 "and it is not in etl_files"
is "$(grep -ac 'caf.*resumes from its last checkpoint\|SQLSTATE 22021' "$T_DIR/sup.log")" 0 \
    "and never retried"

# 6. A record of 2 MB, over etl.max_record_bytes (64 KB by default): the
# old producer hung in libcsv (a 2 MB field grown 128 bytes at a time) and
# was killed by pgrelayd's watchdog, again and again; last, since a hung
# producer holds up every file after it.
new_file huge.csv
goods huge.csv 3
{ printf 'ECC,ECC 001,P5,'; head -c 2097152 /dev/zero | tr '\0' x
  printf ',Exempt,01-Jan-2015,,50000\n'; } >> "$T_DIR/huge.csv"
NLINES[huge.csv]=5
goods huge.csv 30
drop huge.csv
check_file huge.csv 5 "record longer than 65536 bytes"
kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl.dlq" -o beginning -e -q -f '%s\n' 2>/dev/null |
    jq -r 'select(.file == "huge.csv") | "\(.text | length) \(.truncated)"' > "$T_DIR/huge.dlq"
read -r n cut < "$T_DIR/huge.dlq"
is "${n:-0} ${cut:-}" "4096 true" "huge.csv: the DLQ message holds the line's first 4 KB, marked truncated"

# The totals: every wanted row once, per department.
want_totals() {
	awk -F'|' '{n[$3]++; s[$3] += $4} END {for (d in n) print d "|" n[d] "|" s[d]}' \
	    "$T_DIR/want" | sort
}
totals() {
	qb -c "SELECT s.department, (SELECT count(*) FROM department_employee e
	                              WHERE e.department = s.department), s.total_salary
	         FROM department_employee_salary s ORDER BY s.department"
}
wait_until 20 'test "$(totals)" = "$(want_totals)"'
is "$(totals)" "$(want_totals)" "per-department counts and totals are exact"

# 7. With etl.max_record_bytes raised to 4 MB the 2 MB record is parsed and
# wanted, and Kafka refuses it (over the producer's message.max.bytes):
# it goes to the DLQ (a prefix of it: the DLQ message must fit too), the
# rest of the file loads.
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
sed -i 's/^  loader_count = .*/&\n  max_record_bytes = 4194304;/' "$CONF"
start_worker sup pgrelayd -c "$CONF"
new_file kafka.csv
goods kafka.csv 3
{ printf 'ECC,ECC 001,P5,'; head -c 2097152 /dev/zero | tr '\0' y
  printf ',Exempt,01-Jan-2015,,50000\n'; } >> "$T_DIR/kafka.csv"
NLINES[kafka.csv]=5
goods kafka.csv 30
drop kafka.csv
check_file kafka.csv 5 "Message size too large"
kcat -b "$PGRELAY_KAFKA_BROKERS" -C -t "$T_TOPIC.etl.dlq" -o beginning -e -q -f '%s\n' 2>/dev/null |
    jq -r 'select(.file == "kafka.csv") | "\(.fields[3] | length) \(.truncated)"' > "$T_DIR/kafka.dlq"
read -r n cut < "$T_DIR/kafka.dlq"
[ "${n:-0}" -gt 10000 ] && [ "$n" -lt 16384 ] && [ "$cut" = true ]
ok $? "kafka.csv: the DLQ message holds the first ${n:-0} bytes of the 2 MB field, marked truncated"

# 8. A restart in the middle of a file with stray quotes resumes at the
# same records: etl_files says lines up to 12 were handled (as a producer
# killed after a checkpoint there leaves it), so the stray quote at line 5
# is not rejected again, and the one at line 26 is.
new_file resume.csv
goods resume.csv 3
raw resume.csv 1 'ECC,"ECC 001,P5,Analyst,Exempt,01-Jan-2015,,50000\n'
goods resume.csv 20
raw resume.csv 1 'CIT,"CIT 001,P26,Analyst,Exempt,01-Jan-2015,,50000\n'
goods resume.csv 14
awk -F'|' '$1 != "resume.csv" || $2 > 12' "$T_DIR/want" > "$T_DIR/want.tmp" &&
    mv "$T_DIR/want.tmp" "$T_DIR/want"
qb -c "INSERT INTO etl_files (sha256, name, size_bytes, state, last_line)
       VALUES ('$(sha256sum < "$T_DIR/resume.csv" | cut -c1-64)', 'resume.csv',
               $(stat -c %s "$T_DIR/resume.csv"), 'loading', 12)"
drop resume.csv
check_file resume.csv 26 "record not closed within 10 lines"
grep -q "resume.csv: resuming after line 12" "$T_DIR/sup.log"
ok $? "resume.csv: resumed after line 12"
is "$(dlq_entry resume.csv 5 | wc -l)" 0 "resume.csv: the stray quote before it is not rejected again"
wait_until 20 'test "$(totals)" = "$(want_totals)"'
is "$(totals)" "$(want_totals)" "per-department counts and totals are still exact"

stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

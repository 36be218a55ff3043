#!/usr/bin/env bash
# The secured configuration (issue 15): kafka.properties passes librdkafka
# properties through, and the whole pipeline, CDC and ETL, runs over
# SASL_SSL to the broker and sslmode=verify-full to A and B.
#
# Config checks (pgrelayd -t, and a start): every property is set on a
# librdkafka configuration, and a wrong one exits 78 naming FILE:LINE and
# the property; a property pgrelay sets itself (or an alias of one) cannot
# be overridden; a secret in a config file every user can read, a secret
# file every user can read, an unset env: variable all exit 78, and no
# message quotes a secret.
# The pipeline: started with a wrong SASL password, then with a CA that did
# not sign the broker's certificate, then with one that did not sign B's:
# each gives an error line naming what failed; the right one put back and
# pgrelayd reloaded (HUP), A = B exactly, B's row versions are A's newest
# changes, and the ETL totals are exact.  SASL is PLAIN (inside TLS):
# Debian 12's librdkafka cannot use SCRAM with Kafka 4, which part 5 shows
# (the stack's SCRAM user logs in from Kafka's Java client).
# Certificates are the stack's (scripts/stack up: a local CA, a server
# certificate for 127.0.0.1); the wrong CA is made here, with openssl.
. "$(dirname "$0")/lib.sh"

# The stack's secured endpoints, when the environment does not name them.
if [ -z "${PGRELAY_KAFKA_SSL_BROKERS:-}" ]; then
	eval "$("$ROOT/scripts/stack" env | grep -E 'SSL_BROKERS|SASL_|STACK_CA|DSN_TLS')"
fi
for v in PGRELAY_KAFKA_SSL_BROKERS PGRELAY_KAFKA_SASL_USER PGRELAY_KAFKA_SASL_PASSWORD_FILE \
	PGRELAY_STACK_CA PGRELAY_SOURCE_DSN_TLS PGRELAY_TARGET_DSN_TLS; do
	[ -n "${!v:-}" ] || { ok 1 "$v is set (scripts/stack env)"; done_testing; exit 1; }
done
test -s "$PGRELAY_STACK_CA" && test -s "$PGRELAY_KAFKA_SASL_PASSWORD_FILE"
ok $? "the stack's CA and SASL password exist (scripts/stack up made them)"
SASL_PW=$(head -n 1 "$PGRELAY_KAFKA_SASL_PASSWORD_FILE")
WRONG_PW=wrong-$SASL_PW

# A CA of our own that signed nothing the stack presents.
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T_DIR/wrong-ca.key" -out "$T_DIR/wrong-ca.crt" -days 2 \
    -subj "/CN=not the stack's CA" >/dev/null 2>&1
ok $? "a wrong CA made with openssl"

SECRET=$T_DIR/kafka.secret		# what sasl.password = "file:..." reads
(umask 077 && echo "$SASL_PW" > "$SECRET")

# secured_props [CA]: kafka.properties for SASL_SSL with PLAIN (Debian 12's
# librdkafka 2.0.2 cannot log in with SCRAM to Kafka 4: see README).
secured_props() {
	printf '%s\n' \
	    '    ("security.protocol", "SASL_SSL"),' \
	    "    (\"sasl.mechanisms\", \"${T_MECH:-PLAIN}\")," \
	    "    (\"sasl.username\", \"$PGRELAY_KAFKA_SASL_USER\")," \
	    "    (\"sasl.password\", \"file:$SECRET\")," \
	    "    (\"ssl.ca.location\", \"${1:-$PGRELAY_STACK_CA}\")"
}

# check_conf NAME PROPERTIES: pgrelayd -t on a config with these
# properties (file NAME.conf, output NAME.out); echoes the exit code.
check_conf() {
	local f=$T_DIR/$1.conf
	T_KAFKA_PROPERTIES=$2 write_config "$f" >/dev/null
	chmod "${T_MODE:-600}" "$f"
	"$BIN/pgrelayd" -c "$f" -t > "$T_DIR/$1.out" 2>&1
	echo $?
}
# line_of NAME TEXT: the line of the config NAME.conf holding TEXT.
line_of() { grep -nF -- "$2" "$T_DIR/$1.conf" | head -n 1 | cut -d: -f1; }

# ---- the config check ----------------------------------------------------------

is "$(check_conf good "$(secured_props)")" 0 "pgrelayd -t accepts SASL_SSL properties with a file: secret"
grep -q "configuration is valid" "$T_DIR/good.out"
ok $? "and says the configuration is valid"

is "$(check_conf typo "$(secured_props),
    (\"securty.protocol\", \"SASL_SSL\")")" 78 "an unknown property: pgrelayd -t exits 78"
grep -qE "typo\.conf:$(line_of typo securty): kafka\.properties: securty\.protocol: .*No such configuration property" "$T_DIR/typo.out"
ok $? "naming FILE:LINE, the property and librdkafka's error" || cat "$T_DIR/typo.out" >&2

is "$(check_conf value "    (\"security.protocol\", \"SASL_TLS\")")" 78 "a wrong value: exit 78"
grep -qE "value\.conf:$(line_of value SASL_TLS): kafka\.properties: security\.protocol: .*Invalid value" "$T_DIR/value.out"
ok $? "naming FILE:LINE, the property and librdkafka's error" || cat "$T_DIR/value.out" >&2

is "$(check_conf acks "$(secured_props),
    (\"acks\", \"1\")")" 78 "a property pgrelay sets itself (acks): exit 78"
grep -qE "acks\.conf:$(line_of acks '"acks"'): kafka\.properties: acks: pgrelay sets it" "$T_DIR/acks.out"
ok $? "naming FILE:LINE and the property" || cat "$T_DIR/acks.out" >&2

is "$(check_conf alias "    (\"request.required.acks\", \"1\")")" 78 \
    "librdkafka's alias of it (request.required.acks): exit 78"
grep -qE "alias\.conf:$(line_of alias required): kafka\.properties: request\.required\.acks: .*acks" "$T_DIR/alias.out"
ok $? "naming FILE:LINE, the alias and the property it sets" || cat "$T_DIR/alias.out" >&2

is "$(check_conf isolation "    (\"isolation.level\", \"read_uncommitted\")")" 78 \
    "isolation.level cannot be overridden either"

PLAIN_SECRET="    (\"sasl.password\", \"plain-$SASL_PW\")"
is "$(T_MODE=644 check_conf readable "$PLAIN_SECRET")" 78 \
    "a plain sasl.password in a config file every user can read: exit 78"
grep -qE "readable\.conf:$(line_of readable sasl.password): kafka\.properties: sasl\.password: .*(read|mode)" "$T_DIR/readable.out"
ok $? "naming FILE:LINE and the property" || cat "$T_DIR/readable.out" >&2
is "$(T_MODE=640 check_conf private "$PLAIN_SECRET")" 0 \
    "the same in a file others cannot read (0640) is accepted"

cp "$SECRET" "$T_DIR/open.secret" && chmod 644 "$T_DIR/open.secret"
is "$(check_conf opensecret "    (\"sasl.password\", \"file:$T_DIR/open.secret\")")" 78 \
    "a file: secret every user can read: exit 78"
grep -qE "opensecret\.conf:$(line_of opensecret sasl.password): kafka\.properties: sasl\.password: .*open\.secret" "$T_DIR/opensecret.out"
ok $? "naming FILE:LINE, the property and the secret's file" || cat "$T_DIR/opensecret.out" >&2

unset PGRELAY_T95_UNSET
is "$(check_conf noenv "    (\"sasl.password\", \"env:PGRELAY_T95_UNSET\")")" 78 \
    "an env: secret whose variable is not set: exit 78"
grep -qE "noenv\.conf:$(line_of noenv sasl.password): kafka\.properties: sasl\.password: .*PGRELAY_T95_UNSET" "$T_DIR/noenv.out"
ok $? "naming FILE:LINE, the property and the variable" || cat "$T_DIR/noenv.out" >&2
is "$(PGRELAY_T95_PW=$SASL_PW check_conf withenv "    (\"sasl.password\", \"env:PGRELAY_T95_PW\")")" 0 \
    "an env: secret whose variable is set is accepted"

is "$(check_conf nofile "$(secured_props "$T_DIR/no-such-ca.crt")")" 78 \
    "an ssl.ca.location that does not exist: pgrelayd -t exits 78 (librdkafka refuses to create a client)"
grep -qE "nofile\.conf:$(line_of nofile no-such-ca): kafka\.properties: ssl\.ca\.location: " "$T_DIR/nofile.out"
ok $? "naming FILE:LINE and the property" || cat "$T_DIR/nofile.out" >&2

# Not -t: a wrong property stops pgrelayd before it starts anything.
T_KAFKA_PROPERTIES='    ("securty.protocol", "SASL_SSL")' write_config "$T_DIR/start.conf" >/dev/null
"$BIN/pgrelayd" -c "$T_DIR/start.conf" > "$T_DIR/start.out" 2>&1
is "$?" 78 "pgrelayd started with a wrong property exits 78"
grep -q "nothing started" "$T_DIR/start.out"
ok $? "before starting anything"

! grep -rlF -e "$SASL_PW" "$T_DIR"/*.out
ok $? "no config error quotes the secret"

# ---- the pipeline, secured ----------------------------------------------------

T_ETL=true T_BROKERS=$PGRELAY_KAFKA_SSL_BROKERS
T_SOURCE_DSN=$PGRELAY_SOURCE_DSN_TLS T_TARGET_DSN=$PGRELAY_TARGET_DSN_TLS
CONF=$T_DIR/pgrelay.conf
secure_config() {	# secure_config [KAFKA-CA] [TARGET-DSN]
	T_KAFKA_PROPERTIES=$(secured_props "${1:-}") T_TARGET_DSN=${2:-$PGRELAY_TARGET_DSN_TLS} \
	    write_config "$CONF" >/dev/null
	chmod 600 "$CONF"
}
# pgrelayd reads the brokers and DSNs from the file: the environment's
# (plain) ones would override them, so it starts without them.
start_sup() {
	PGRELAY_KAFKA_BROKERS= PGRELAY_SOURCE_DSN= PGRELAY_TARGET_DSN= start_worker sup pgrelayd -c "$CONF"
}
reload_sup() { kill -HUP "${T_PIDS[sup]}"; }
# loaded: "dept|rows|total" of the ETL tables on B
loaded() {
	qb -c "SELECT s.department, (SELECT count(*) FROM department_employee e
	                              WHERE e.department = s.department), s.total_salary
	         FROM department_employee_salary s ORDER BY s.department" | tr '\n' ' '
}
HEADER='Department,Department-Division,PCN,Position Title,FLSA Status,Initial Hire Date,Date in Title,Salary'
drop_csv() {	# drop_csv NAME LINES...: a CSV into the spool, renamed into place
	printf '%s\n' "$HEADER" "${@:2}" > "$T_DIR/spool/.$1.part" &&
	    mv "$T_DIR/spool/.$1.part" "$T_DIR/spool/$1"
}
write_changes() {	# write_changes TAG: 60 inserts, 30 updates, 10 deletes on A
	qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
	       SELECT '$1' || i, 'n' || i, DATE '2008-01-01' + i, 'c' || i, 20000 + i
	         FROM generate_series(1, 60) i" \
	   -c "UPDATE employees SET city = '$1' WHERE emp_id IN
	         (SELECT emp_id FROM employees ORDER BY emp_id LIMIT 30)" \
	   -c "DELETE FROM employees WHERE emp_id IN
	         (SELECT emp_id FROM employees ORDER BY emp_id DESC LIMIT 10)"
}

reset_pipeline >/dev/null
qb -c "TRUNCATE department_employee, department_employee_salary, etl_files RESTART IDENTITY"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       SELECT 'first' || i, 'last' || i, DATE '2007-01-01' + (i % 3000), 'city' || (i % 17), 10001 + i
         FROM generate_series(1, 300) i"
ok $? "300 rows on A before pgrelayd starts"

# 1. A wrong SASL password.
(umask 077 && echo "$WRONG_PW" > "$SECRET")
secure_config
start_sup
wait_until 20 'grep -qE "ERROR: kafka: SASL authentication failed" "$T_DIR/sup.log"'
ok $? "a wrong SASL password: an error line says the SASL authentication failed"
diag "$(grep -m 1 -E 'ERROR: kafka: SASL authentication failed' "$T_DIR/sup.log")"
drop_csv one.csv 'ECC,ECC 001 Ops,P1,Engineer,Exempt,10-Sep-2015,01-Mar-2018,50000.75' \
    'CIT,CIT 002 Net,P2,Analyst,Exempt,16-Aug-2012,07-Dec-2016,60000.20' \
    'EMS,EMS 003 Med,P3,Medic,Non Exempt,01-Jan-2011,01-Jan-2019,70000.99' \
    'AGR,AGR 001 Farm,P4,Farmer,Exempt,01-Jan-2015,01-Jan-2019,80000.00'
sleep 2
is "$(qb -c "SELECT count(*) FROM employees") $(qb -c "SELECT count(*) FROM department_employee")" "0 0" \
    "nothing reaches B while the broker refuses the login"
(umask 077 && echo "$SASL_PW" > "$SECRET")
reload_sup
wait_until 60 same_rows
compare_ab "the right password and a reload" =300
wait_until 30 'test "$(loaded)" = "CIT|1|60000 ECC|1|50000 EMS|1|70000 "'
is "$(loaded)" "CIT|1|60000 ECC|1|50000 EMS|1|70000 " "the ETL file loaded over SASL_SSL and TLS to B"

# 2. Running secured: every pgrelay session on A and B uses TLS.
write_changes secured
wait_until 30 same_rows
compare_ab "changes over SASL_SSL and verify-full" =350
versions_match "changes over SASL_SSL and verify-full"
ssl_sessions() {	# "with TLS|without" among pgrelay's sessions
	"$1" -c "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
	           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
	          WHERE a.application_name LIKE 'pgrelay-%'"
}
a_ssl=$(ssl_sessions qa) b_ssl=$(ssl_sessions qb)
[ "${a_ssl%|*}" -ge 1 ] && [ "${a_ssl#*|}" = 0 ] && [ "${b_ssl%|*}" -ge 1 ] && [ "${b_ssl#*|}" = 0 ]
ok $? "every pgrelay session on A ($a_ssl) and B ($b_ssl) is TLS (with TLS|without)"
! ps -eo args | grep -F -e "$SASL_PW" | grep -v grep
ok $? "the password is on no process's command line while the pipeline runs"
# A reload with a wrong property is refused; the running config stays.
cp "$CONF" "$T_DIR/good.copy"
sed -i 's/"sasl.mechanisms"/"sasl.mechanismz"/' "$CONF"
reload_sup
wait_until 10 'grep -qE "reload rejected.*pgrelay\.conf:[0-9]+: kafka\.properties: sasl\.mechanismz: librdkafka: No such configuration property" "$T_DIR/sup.log"'
ok $? "a HUP with a wrong property is refused, naming FILE:LINE and the property"
cp "$T_DIR/good.copy" "$CONF" && rm -f "$T_DIR/good.copy"

# 3. A CA that did not sign the broker's certificate.
stop_worker sup TERM
is "$?" 0 "pgrelayd stops (exit 0)"
write_changes wrongca
secure_config "$T_DIR/wrong-ca.crt"
start_sup
wait_until 20 'grep -qE "ERROR: kafka: TLS handshake failed.*certificate verify failed" "$T_DIR/sup.log"'
ok $? "a wrong ssl.ca.location: an error line says the TLS handshake failed verifying the certificate"
diag "$(grep -m 1 -E 'ERROR: kafka: TLS handshake failed' "$T_DIR/sup.log")"
secure_config
reload_sup
wait_until 60 same_rows
compare_ab "the right CA and a reload" =400
versions_match "the right CA and a reload"

# 4. A CA that did not sign B's certificate (sslrootcert of verify-full).
stop_worker sup TERM
is "$?" 0 "pgrelayd stops (exit 0)"
write_changes wrongpg
secure_config "" "${PGRELAY_TARGET_DSN_TLS/sslrootcert=*/sslrootcert=$T_DIR/wrong-ca.crt}"
start_sup
drop_csv two.csv 'ECC,ECC 001 Ops,P5,Engineer II,Exempt,10-Sep-2020,01-Mar-2021,1000.50'
wait_until 20 'grep -qE "target database: .*certificate verify failed" "$T_DIR/sup.log"'
ok $? "a wrong sslrootcert for B: an error line names the target database and the certificate verify failure"
diag "$(grep -m 1 -E 'target database: .*certificate verify failed' "$T_DIR/sup.log")"
secure_config
reload_sup
wait_until 60 same_rows
compare_ab "B's right CA and a reload" =450
versions_match "B's right CA and a reload"
wait_until 30 'test "$(loaded)" = "CIT|1|60000 ECC|2|51000 EMS|1|70000 "'
is "$(loaded)" "CIT|1|60000 ECC|2|51000 EMS|1|70000 " "the second ETL file loaded once, totals exact"

stop_worker sup TERM
is "$?" 0 "pgrelayd drains and exits 0"

# 5. SCRAM-SHA-512: the stack's credential (made at format, or added to an
# older cluster) takes a login from Kafka's Java client; Debian 12's
# librdkafka 2.0.2 cannot log in with it to Kafka 4 (librdkafka #4895), and
# pgrelay's error line says why.
printf '%s\n' "security.protocol=SASL_SSL" "sasl.mechanism=SCRAM-SHA-512" \
    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$PGRELAY_KAFKA_SASL_USER\" password=\"$SASL_PW\";" \
    "ssl.truststore.type=PEM" "ssl.truststore.location=$PGRELAY_STACK_CA" > "$T_DIR/java-client.secret"
chmod 600 "$T_DIR/java-client.secret"
java -Xmx128m -cp "$PGRELAY_KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$PGRELAY_KAFKA_SSL_BROKERS" --command-config "$T_DIR/java-client.secret" \
    --list 2>&1 | grep -v "^SLF4J" > "$T_DIR/java-scram.out"
grep -qx "$T_TOPIC" "$T_DIR/java-scram.out"
ok $? "Kafka's Java client logs in with SCRAM-SHA-512 over TLS and lists the topics"
rdk=$(kcat -V 2>/dev/null | sed -n 's/.*librdkafka \([0-9.]*\).*/\1/p' | head -n 1)
if [ "$(printf '%s\n' "$rdk" 2.6.1 | sort -V | head -n 1)" != 2.6.1 ]; then
	T_MECH=SCRAM-SHA-512 T_KAFKA_PROPERTIES=$(T_MECH=SCRAM-SHA-512 secured_props) \
	    write_config "$T_DIR/scram.conf" >/dev/null
	chmod 600 "$T_DIR/scram.conf"
	PGRELAY_KAFKA_BROKERS= PGRELAY_SOURCE_DSN= PGRELAY_TARGET_DSN= \
	    start_worker scram producer -c "$T_DIR/scram.conf"
	wait_until 20 'grep -q "SASL authentication failed.*librdkafka #4895" "$T_DIR/scram.log"'
	ok $? "librdkafka $rdk with SCRAM-SHA-512: the error line names librdkafka #4895 and PLAIN"
	stop_worker scram TERM
	is "$?" 0 "and the producer, stopped while it waits for the broker, exits 0"
else
	diag "librdkafka $rdk logs in with SCRAM; not checked here"
fi

# No secret in any log line, nor in any process's arguments.
# (the configs of the checks above hold one on purpose, *.secret the files)
! grep -rlF -e "$SASL_PW" -e "$WRONG_PW" --exclude-dir=spool --exclude='*.secret' \
    --exclude='*.conf' "$T_DIR"
ok $? "neither password is in any log or output of the run"
done_testing

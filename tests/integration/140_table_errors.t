#!/usr/bin/env bash
# A table pgrelay cannot replicate is a configuration error, found before
# anything runs: no key, a column of a type it cannot carry, a table that
# does not exist, a rule naming a missing column or with a value of
# another type.  pgrelayd -t exits 78 naming the file, line and table; a
# reload to such a config is refused and the running one kept.
. "$(dirname "$0")/lib.sh"

qa -c "DROP TABLE IF EXISTS e_nokey, e_money;
       CREATE TABLE e_nokey (a integer, b text);
       CREATE TABLE e_money (id integer PRIMARY KEY, m money)" 2>/dev/null
check() {	# check TABLES WANT_EXIT WANT_TEXT WHAT
	T_TABLES=$1 write_config "$T_DIR/check.conf" >/dev/null
	"$BIN/pgrelayd" -t -c "$T_DIR/check.conf" > "$T_DIR/check.out" 2>&1
	local rc=$?
	is "$rc" "$2" "$4: pgrelayd -t exits $2"
	grep -q -- "$3" "$T_DIR/check.out"
	ok $? "$4: it says \"$3\"" || sed 's/^/#   /' "$T_DIR/check.out" >&2
}
check '{ source = "e_nokey"; }' 78 "check.conf:[0-9]*: cdc.tables: source: table public.e_nokey has no primary key" "a table without a key"
check '{ source = "public.e_money"; }' 78 'column "m" has type money, which pgrelay cannot carry' "a column of type money"
check '{ source = "public.e_money"; exclude = ["m"]; }' 0 "configuration is valid" "the same column excluded"
check '{ source = "nosuch"; }' 78 "table public.nosuch does not exist" "a missing table"
check '{ source = "employees";
  rules = [ "salary > 10000",
            "bonus >= 0" ]; }' 78 "check.conf:1[0-9]: cdc.tables: rules: bonus >= 0: table public.employees has no column \"bonus\"" "a rule naming a missing column"
check '{ source = "employees"; rules = [ "salary > lots" ]; }' 78 "rules:.*salary" "a rule whose value is not the column's type"
check '{ source = "employees"; rules = [ "salary >> 1" ]; }' 78 "is not a rule" "a rule that does not parse"
check '{ source = "employees"; topic = "'"$T_TOPIC"'"; }' 0 "configuration is valid" "employees"

# A reload to a bad config is refused; the running one stays and works.
T_TABLES='{ source = "employees"; topic = "'"$T_TOPIC"'"; rules = [ "salary > 10000" ]; }'
CONF=$(write_config)
reset_pipeline >/dev/null
start_worker sup pgrelayd -c "$CONF"
wait_until 60 'test "$(running_count producer)" = 1 && test "$(running_count consumer)" = 1'
producer=$(child_pids producer)
T_TABLES='{ source = "e_nokey"; }' write_config "$CONF" >/dev/null
kill -HUP "${T_PIDS[sup]}"
wait_until 20 'grep -q "reload rejected" "$T_DIR/sup.log"'
grep -q "reload rejected, the running configuration stays" "$T_DIR/sup.log"
ok $? "the reload is refused"
grep -q "e_nokey has no primary key" "$T_DIR/sup.log"
ok $? "and the log says why"
is "$(child_pids producer)" "$producer" "the producer was not restarted"
qa -c "INSERT INTO employees (first_name, last_name, dob, city, salary)
       VALUES ('after', 'reload', '2008-01-01', 'c', 20000)"
wait_until 20 'test "$(qb -c "SELECT count(*) FROM employees WHERE first_name = '\''after'\''")" = 1'
is "$(qb -c "SELECT count(*) FROM employees WHERE first_name = 'after'")" 1 \
    "changes flow on with the running config"
stop_worker sup
is "$?" 0 "pgrelayd drains and exits 0"
done_testing

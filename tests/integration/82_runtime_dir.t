#!/usr/bin/env bash
# pgrelayd's runtime directory and what it hands its children: one
# pgrelayd per directory (a second one exits 1 naming the first's pid and
# touches nothing); a directory others can write to, or of another user,
# is refused; a link planted where the config copy is written is not
# followed; descriptors pgrelayd did not open never reach it or its
# workers; a DSN libpq cannot parse is a config error whose message never
# shows the password.
. "$(dirname "$0")/lib.sh"

T_WATCHDOG=2
CONF=$(write_config)
reset_pipeline >/dev/null

# 1. Two pgrelayd on one runtime directory.
start_worker s1 pgrelayd -c "$CONF"
wait_until 20 'sup_status >/dev/null 2>&1 && test "$(running_count consumer)" = 1'
ok $? "the first pgrelayd runs"
timeout 20 "$BIN/pgrelayd" -c "$CONF" > "$T_DIR/second.out" 2>&1
is "$?" 1 "a second pgrelayd on the same runtime_dir exits 1"
grep -q "another pgrelayd (pid ${T_PIDS[s1]}) runs with the runtime directory $T_DIR/run" "$T_DIR/second.out"
ok $? "naming the running one's pid" || sed 's/^/#   /' "$T_DIR/second.out" >&2
consumer=$(child_pids consumer)

# The control socket: idle clients do not stall pgrelayd's loop, and a
# number past any pool size is refused, not added (a signed overflow).
python3 -c '
import socket, sys, time
held = []
for i in range(10):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sys.argv[1])
    held.append(c)
print("connected", flush=True)
time.sleep(4)
' "$T_DIR/run/pgrelayd.sock" > "$T_DIR/idle.out" 2>&1 &
idle=$!
wait_until 5 'grep -q connected "$T_DIR/idle.out"'
t0=$(date +%s%N)
sup_status > /dev/null
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
ok "$([ $rc -eq 0 ] && [ "$ms" -lt 1000 ]; echo $?)" "status answers in ${ms} ms with 10 idle clients connected (under 1 s; each held the loop 200 ms)"
wait "$idle"
"$BIN/pgrelayctl" -s "$T_DIR/run/pgrelayd.sock" scale consumer +9223372036854775807 > "$T_DIR/scale.out" 2>&1
is "$?" 1 "scale consumer +9223372036854775807 is refused"
grep -q "^error:" "$T_DIR/scale.out" && kill -0 "${T_PIDS[s1]}"
ok $? "with an error, and pgrelayd lives on ($(head -c 80 "$T_DIR/scale.out"))"
sleep $((T_WATCHDOG * 2))
sup_status >/dev/null 2>&1
ok $? "the first one's control socket still answers"
is "$(child_pids consumer)" "$consumer" "and its workers were not disturbed (the same consumer after 2 watchdog periods)"
grep -q "sent no keep-alive" "$T_DIR/s1.log"
ok $((! $?)) "none of them was taken for hung"
stop_worker s1
is "$?" 0 "the first pgrelayd stops cleanly"

# 2. A runtime directory others can write to, or of another user.
mkdir -m 0777 "$T_DIR/open"
chmod 0777 "$T_DIR/open"
sed "s|$T_DIR/run|$T_DIR/open|" "$CONF" > "$T_DIR/open.conf"
timeout 20 "$BIN/pgrelayd" -c "$T_DIR/open.conf" > "$T_DIR/open.out" 2>&1
is "$?" 78 "a runtime_dir writable by others: exit 78"
grep -q "supervisor.runtime_dir: $T_DIR/open belongs to uid $(id -u) with mode 0777; it must belong to pgrelayd's user" "$T_DIR/open.out"
ok $? "naming the directory, its mode and why" || sed 's/^/#   /' "$T_DIR/open.out" >&2
mkdir -m 0700 "$T_DIR/other"
chown 65534 "$T_DIR/other"
sed "s|$T_DIR/run|$T_DIR/other|" "$CONF" > "$T_DIR/other.conf"
timeout 20 "$BIN/pgrelayd" -c "$T_DIR/other.conf" > "$T_DIR/other.out" 2>&1
is "$?" 78 "a runtime_dir of another user: exit 78"
grep -q "belongs to uid 65534" "$T_DIR/other.out"
ok $? "naming its owner"
test ! -e "$T_DIR/open/active.conf" && test ! -e "$T_DIR/other/active.conf"
ok $? "no config copy was written into either"

# 3. A link planted where the copy is written.
mkdir -m 0700 "$T_DIR/linked"
ln -s "$T_DIR/stolen" "$T_DIR/linked/active.conf.new"
sed "s|$T_DIR/run|$T_DIR/linked|" "$CONF" > "$T_DIR/linked.conf"
start_worker s2 pgrelayd -c "$T_DIR/linked.conf"
wait_until 20 'test -f "$T_DIR/linked/active.conf"'
test ! -e "$T_DIR/stolen"
ok $? "the link at active.conf.new is not followed (nothing written at its target)"
test -f "$T_DIR/linked/active.conf" && ! test -L "$T_DIR/linked/active.conf" &&
    test "$(stat -c %a "$T_DIR/linked/active.conf")" = 600
ok $? "the copy is a regular file of mode 0600"
stop_worker s2

# 4. A descriptor left open by whatever starts pgrelayd.
( exec 7> "$T_DIR/leaked"; exec "$BIN/pgrelayd" -c "$CONF" ) >> "$T_DIR/s3.log" 2>&1 &
T_PIDS[s3]=$!
wait_until 20 'test "$(running_count consumer)" = 1 && test "$(running_count producer)" = 1'
leaks=0
for pid in "${T_PIDS[s3]}" $(sup_status --json | jq -r '.children[] | select(.state == "running") | .pid'); do
	for fd in /proc/$pid/fd/*; do
		[ "$(readlink "$fd")" = "$T_DIR/leaked" ] && { leaks=$((leaks + 1)); diag "pid $pid has $fd"; }
	done
done
is "$leaks" 0 "neither pgrelayd nor its workers hold the descriptor it was started with"
stop_worker s3

# 5. A DSN libpq cannot parse, in the file and in the environment.
sed 's|source = { dsn = "set by PGRELAY_SOURCE_DSN"; };|source = { dsn = "postgresql://u:Tg7Secret%ZZ@h/db"; };|' "$CONF" > "$T_DIR/dsn.conf"
env -u PGRELAY_SOURCE_DSN "$BIN/pgrelayd" -c "$T_DIR/dsn.conf" -t > "$T_DIR/dsn.out" 2>&1
is "$?" 78 "pgrelayd -t exits 78 on a malformed source.dsn"
grep -q "dsn.conf:[0-9]*: source.dsn: not a valid libpq connection string" "$T_DIR/dsn.out" &&
    ! grep -q "Tg7Secret" "$T_DIR/dsn.out"
ok $? "naming file, line and key, without the password" || sed 's/^/#   /' "$T_DIR/dsn.out" >&2
PGRELAY_TARGET_DSN="host=h password=Tg7Secret xyz" timeout 20 "$BIN/pgrelay-consumer" -c "$CONF" > "$T_DIR/dsn2.out" 2>&1
is "$?" 78 "a worker exits 78 on a malformed PGRELAY_TARGET_DSN"
grep -q "PGRELAY_TARGET_DSN (overrides target.dsn): not a valid libpq connection string" "$T_DIR/dsn2.out" &&
    ! grep -q "Tg7Secret" "$T_DIR/dsn2.out"
ok $? "naming the variable, without the password" || sed 's/^/#   /' "$T_DIR/dsn2.out" >&2
done_testing

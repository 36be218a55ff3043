#!/usr/bin/env bash
# The unit file: systemd-analyze verify accepts it (with ExecStart pointed
# at this build, and its Documentation= man pages found among this
# build's), and systemd-analyze security scores it at 2.0 or below.  Test
# 75 does the same for the unit make install writes.
. "$(dirname "$0")/lib.sh"

sed -e "s|/usr/local/bin/|$BIN/|g" "$ROOT/systemd/pgrelay.service" > "$T_DIR/pgrelay.service"
out=$(MANPATH=$BIN/man systemd-analyze verify "$T_DIR/pgrelay.service" 2>&1)
rc=$?
is "$rc" 0 "systemd-analyze verify passes"
is "$out" "" "and prints no warning"
score=$(systemd-analyze security --offline=true "$T_DIR/pgrelay.service" 2>/dev/null |
	sed -n 's/.*Overall exposure level for pgrelay.service: \([0-9.]*\).*/\1/p')
diag "systemd-analyze security exposure: $score"
ok "$(awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'; echo $?)" \
    "exposure $score is 2.0 or below"
grep -q '^Type=notify' "$ROOT/systemd/pgrelay.service"
ok $? "the service is Type=notify"
grep -q '^RestartPreventExitStatus=78' "$ROOT/systemd/pgrelay.service"
ok $? "a config error (78) is not restarted by systemd"
done_testing

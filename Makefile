# pgrelay - build, test, install.
#
#   make              build the programs into build/
#   make SAN=1        the same with AddressSanitizer + UBSan, into build-san/
#   make check        unit tests (plain and sanitized) and integration tests
#                     (sanitized binaries) against the local stack
#   make fuzz         libFuzzer targets (clang, ASan+UBSan) into build-fuzz/
#   make fuzz-run     run each for FUZZ_SECONDS (10) on a copy of its corpus
#   make install      PREFIX=/usr/local SYSCONFDIR=/etc LOCALSTATEDIR=/var DESTDIR=
#                     (then, on the host that runs it: systemd-sysusers and
#                     systemd-tmpfiles --create; README, Install)
#   make clean

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
SPOOLDIR ?= $(LOCALSTATEDIR)/spool/pgrelay
DATADIR  ?= $(PREFIX)/share/pgrelay
DOCDIR   ?= $(PREFIX)/share/doc/pgrelay
MANDIR   ?= $(PREFIX)/share/man
UNITDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CONFFILE := $(SYSCONFDIR)/pgrelay/pgrelay.conf

CC       ?= cc
PKGS     := rdkafka libpq libconfig libsystemd jansson libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

CFLAGS   ?= -O2 -g
WARN     := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral
ifeq ($(SAN),1)
BUILD    := build-san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD    := build
SANFLAGS :=
endif
ALL_CFLAGS := $(WARN) $(CFLAGS) $(SANFLAGS) -Icommon $(PKG_CFLAGS) -MMD -MP
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)
# libcsv ships no pkg-config file.
LIBS     := $(PKG_LIBS) -lcsv -lm

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
WORKERS    := producer snapshot consumer etl_producer etl_loader
PROGRAMS   := $(WORKERS:%=$(BUILD)/pgrelay-%) $(BUILD)/pgrelayd $(BUILD)/pgrelayctl
BENCH      := $(BUILD)/loadgen $(BUILD)/direct
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
# Manual pages: NAME.SECTION.in with the @DIR@ paths open (install fills
# them in for its own directories), and the pages for this build's paths.
MAN_IN     := $(BUILD)/man/pgrelayd.8.in $(BUILD)/man/pgrelayctl.1.in \
              $(BUILD)/man/pgrelay.conf.5.in
MAN_PAGES  := $(BUILD)/man/man8/pgrelayd.8 $(BUILD)/man/man1/pgrelayctl.1 \
              $(BUILD)/man/man5/pgrelay.conf.5

.PHONY: all check check-unit check-integration install clean san bench fuzz fuzz-run
all: $(PROGRAMS) $(UNIT_BIN) $(BENCH) $(MAN_PAGES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libpgrelay.a: $(COMMON_OBJ)
	ar rcs $@ $^

$(BUILD)/pgrelay-%: $(BUILD)/workers/%.o $(BUILD)/libpgrelay.a
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/pgrelayd: $(BUILD)/supervisor/supervisor.o $(BUILD)/libpgrelay.a
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/pgrelayctl: $(BUILD)/supervisor/pgrelayctl.o $(BUILD)/libpgrelay.a
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/loadgen: $(BUILD)/bench/loadgen.o
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/direct: $(BUILD)/bench/direct.o
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libpgrelay.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

# pgrelay.conf(5)'s keys: config.c's schema (printed by cfgkeys, a build
# tool) with the meaning of each from etc/pgrelay.conf's comments;
# mkconfman.awk fails when the two disagree.
$(BUILD)/cfgkeys: $(BUILD)/man/cfgkeys.o $(BUILD)/libpgrelay.a
	$(CC) $(ALL_LDFLAGS) $^ $(LIBS) -o $@

$(BUILD)/man/keys.tsv: $(BUILD)/cfgkeys
	$< > $@.tmp && mv $@.tmp $@

$(BUILD)/man/pgrelay.conf.5.in: man/pgrelay.conf.5.in man/mkconfman.awk \
    $(BUILD)/man/keys.tsv etc/pgrelay.conf
	awk -f man/mkconfman.awk $(BUILD)/man/keys.tsv etc/pgrelay.conf $< > $@.tmp
	mv $@.tmp $@

$(BUILD)/man/pgrelayd.8.in $(BUILD)/man/pgrelayctl.1.in: $(BUILD)/man/%: man/%
	@mkdir -p $(dir $@)
	cp $< $@

# The paths a page names, for the directories of this make; the default
# paths in etc/pgrelay.conf's comments (which pgrelay.conf(5) carries) too.
MAN_SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
    -e 's|@SPOOLDIR@|$(SPOOLDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
    -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|@SYSUSERSDIR@|$(SYSUSERSDIR)|g' \
    -e 's|@TMPFILESDIR@|$(TMPFILESDIR)|g' \
    -e 's|/etc/pgrelay/|$(SYSCONFDIR)/pgrelay/|g' \
    -e 's|/var/spool/pgrelay|$(SPOOLDIR)|g'

$(BUILD)/man/man1/%: $(BUILD)/man/%.in
	@mkdir -p $(dir $@)
	$(MAN_SUBST) $< > $@
$(BUILD)/man/man5/%: $(BUILD)/man/%.in
	@mkdir -p $(dir $@)
	$(MAN_SUBST) $< > $@
$(BUILD)/man/man8/%: $(BUILD)/man/%.in
	@mkdir -p $(dir $@)
	$(MAN_SUBST) $< > $@

san:
	$(MAKE) SAN=1 all

# Unit tests need nothing running; integration tests bring the stack up.
check-unit: all
	$(MAKE) SAN=1 all
	prove --exec '' $(UNIT_BIN) $(UNIT_BIN:$(BUILD)/%=build-san/%)

check-integration: all
	$(MAKE) SAN=1 all
	scripts/stack up
	PGRELAY_BIN=$(CURDIR)/build-san prove --exec '' --timer tests/integration/*.t

check: all
	$(MAKE) SAN=1 all
	scripts/stack up
	PGRELAY_BIN=$(CURDIR)/build-san prove --exec '' --timer \
	    $(UNIT_BIN) $(UNIT_BIN:$(BUILD)/%=build-san/%) tests/integration/*.t

bench: all
	bench/run

# libFuzzer targets, tests/fuzz/fuzz_NAME.c, seeds in tests/fuzz/corpus/NAME/.
# Built by clang with ASan and UBSan; every object, common/ included, is
# instrumented for coverage (fuzzer-no-link), and only the link adds
# libFuzzer's main.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(WARN) -O1 -g $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Icommon \
                $(PKG_CFLAGS) -MMD -MP
FUZZ_TARGETS ?= codec csvrec config ctlproto
FUZZ_SECONDS ?= 10
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: $(FUZZ_BIN)
.SECONDARY: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/tests/fuzz/fuzz_%.o)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/libpgrelay.a: $(COMMON_SRC:%.c=$(FUZZ_BUILD)/%.o)
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libpgrelay.a
	$(FUZZ_CC) $(LDFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer $^ $(LIBS) -o $@

# Each target for FUZZ_SECONDS on a copy of its corpus (the repository's
# stays as it is); a crash fails, with the input kept in build-fuzz/crashes/.
fuzz-run: fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) prove -v --exec '' tests/fuzz/run :: $(FUZZ_TARGETS)

# The unit, the tmpfiles.d file and the config in the tree name the default
# paths; these become the directories of this install.
PATH_SUBST = sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
    -e 's|/etc/pgrelay/|$(SYSCONFDIR)/pgrelay/|g' \
    -e 's|/var/spool/pgrelay|$(SPOOLDIR)|g' \
    -e 's|/usr/local/share/doc/pgrelay|$(DOCDIR)|g'
STAGE := $(BUILD)/install

# The config is root:pgrelay 0640, so that the service's user reads it and
# no one else does.  The group is set here when it exists (as root); when it
# does not yet (a package built before its user, a host without it), the
# tmpfiles.d line sets it in the post-install step, and at every boot.  An
# existing config is kept; the shipped one goes to DOCDIR as an example.
install: all
	rm -rf $(STAGE) && mkdir -p $(STAGE)
	$(PATH_SUBST) systemd/pgrelay.service > $(STAGE)/pgrelay.service
	$(PATH_SUBST) systemd/pgrelay.tmpfiles > $(STAGE)/pgrelay.tmpfiles
	$(PATH_SUBST) etc/pgrelay.conf > $(STAGE)/pgrelay.conf
	for f in $(MAN_IN); do $(MAN_SUBST) $$f > $(STAGE)/$$(basename $$f .in); done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/pgrelay \
	    $(DESTDIR)$(DATADIR)/sql/source $(DESTDIR)$(DATADIR)/sql/target \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	    $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	@if [ -e '$(DESTDIR)$(CONFFILE)' ]; then \
	    echo "make install: $(DESTDIR)$(CONFFILE) exists: kept (the shipped one is $(DOCDIR)/pgrelay.conf.example)"; \
	else \
	    echo "install -m 0640 $(STAGE)/pgrelay.conf $(DESTDIR)$(CONFFILE)"; \
	    install -m 0640 $(STAGE)/pgrelay.conf '$(DESTDIR)$(CONFFILE)'; \
	fi
	@if [ "$$(id -u)" = 0 ] && getent group pgrelay >/dev/null; then \
	    echo "chgrp pgrelay $(DESTDIR)$(CONFFILE); chmod 0640 $(DESTDIR)$(CONFFILE)"; \
	    chgrp pgrelay '$(DESTDIR)$(CONFFILE)' && chmod 0640 '$(DESTDIR)$(CONFFILE)'; \
	else \
	    echo "make install: no group pgrelay (yet), or not root: $(CONFFILE) is left in group $$(stat -c %G '$(DESTDIR)$(CONFFILE)'); systemd-tmpfiles --create makes it root:pgrelay 0640"; \
	fi
	install -m 0644 $(STAGE)/pgrelay.conf $(DESTDIR)$(DOCDIR)/pgrelay.conf.example
	install -m 0644 sql/source/*.sql $(DESTDIR)$(DATADIR)/sql/source/
	install -m 0644 sql/target/*.sql $(DESTDIR)$(DATADIR)/sql/target/
	install -m 0644 $(STAGE)/pgrelay.service $(DESTDIR)$(UNITDIR)/pgrelay.service
	install -m 0644 systemd/pgrelay.sysusers $(DESTDIR)$(SYSUSERSDIR)/pgrelay.conf
	install -m 0644 $(STAGE)/pgrelay.tmpfiles $(DESTDIR)$(TMPFILESDIR)/pgrelay.conf
	install -m 0644 $(STAGE)/pgrelayd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(STAGE)/pgrelayctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(STAGE)/pgrelay.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	@echo "make install: done.  On the host that runs pgrelay, as root (a package's post-install):"
	@echo "  systemd-sysusers $(SYSUSERSDIR)/pgrelay.conf        # the user and group pgrelay"
	@echo "  systemd-tmpfiles --create $(TMPFILESDIR)/pgrelay.conf  # the ETL spool; the config root:pgrelay 0640"
	@echo "  systemctl daemon-reload && systemctl enable --now pgrelay"

clean:
	rm -rf build build-san build-fuzz

-include $(shell find build build-san build-fuzz -name '*.d' 2>/dev/null)

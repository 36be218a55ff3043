# pgrelay - build, test, install.
#
#   make              build the programs into build/
#   make SAN=1        the same with AddressSanitizer + UBSan, into build-san/
#   make check        unit tests (plain and sanitized) and integration tests
#                     (sanitized binaries) against the local stack
#   make install      PREFIX=/usr/local DESTDIR=
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

.PHONY: all check check-unit check-integration install clean san bench
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

# The paths a page names, for the directories of this make.
MAN_SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
    -e 's|@SPOOLDIR@|$(SPOOLDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g' \
    -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|@SYSUSERSDIR@|$(SYSUSERSDIR)|g' \
    -e 's|@TMPFILESDIR@|$(TMPFILESDIR)|g'

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

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/pgrelay \
	    $(DESTDIR)$(DATADIR)/sql/source $(DESTDIR)$(DATADIR)/sql/target \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	test -e $(DESTDIR)$(SYSCONFDIR)/pgrelay/pgrelay.conf || \
	    install -m 0640 etc/pgrelay.conf $(DESTDIR)$(SYSCONFDIR)/pgrelay/pgrelay.conf
	install -m 0644 sql/source/*.sql $(DESTDIR)$(DATADIR)/sql/source/
	install -m 0644 sql/target/*.sql $(DESTDIR)$(DATADIR)/sql/target/
	sed 's|/usr/local/bin/|$(BINDIR)/|g; s|/etc/pgrelay/|$(SYSCONFDIR)/pgrelay/|g' \
	    systemd/pgrelay.service > $(DESTDIR)$(UNITDIR)/pgrelay.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/pgrelay.service
	install -m 0644 systemd/pgrelay.sysusers $(DESTDIR)$(SYSUSERSDIR)/pgrelay.conf
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md

clean:
	rm -rf build build-san

-include $(shell find build build-san -name '*.d' 2>/dev/null)

# pgrelay - build, test, install.
#
#   make              build the programs into build/
#   make SAN=1        the same with AddressSanitizer + UBSan, into build-san/
#   make check        unit tests (plain and sanitized) and integration tests
#                     (sanitized binaries) against the local stack
#   make fuzz         libFuzzer targets (clang, ASan+UBSan) into build-fuzz/
#   make fuzz-run     run each for FUZZ_SECONDS (10) on a copy of its corpus
#   make install      PREFIX=/usr/local DESTDIR=
#   make clean

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DATADIR  ?= $(PREFIX)/share/pgrelay
UNITDIR  ?= $(PREFIX)/lib/systemd/system

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

.PHONY: all check check-unit check-integration install clean san bench fuzz fuzz-run
all: $(PROGRAMS) $(UNIT_BIN) $(BENCH)

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

SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
DOCDIR   ?= $(PREFIX)/share/doc/pgrelay

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
	rm -rf build build-san build-fuzz

-include $(shell find build build-san build-fuzz -name '*.d' 2>/dev/null)

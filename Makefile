# tern build. Plain make + pkg-config. Every .c under src/<concern>/ goes into one static
# library; the two mains link against it; every tests/unit/test_*.c is its own cmocka binary.
#
#   make                 build ternd and tern into build/
#   make run             install deps, build, create ./var if absent, run ternd in the foreground
#   make check           install deps, build (gcc + clang), unit, integration, ASan/UBSan, fuzz smoke
#   make bench           tern beside Postfix and OpenSMTPD (../shared/bench): delivery, then
#                        STARTTLS handshakes/s and AUTH PLAIN/s beside Postfix + Dovecot SASL,
#                        then one shared Maildir beside eight distinct ones
#   make fuzz            build the libFuzzer harnesses (clang) into build/fuzz/
#   make format          reformat with clang-format; make format-check only checks
#   make libtern         the client library alone: build/libtern.a, build/libtern.so.0, libtern.pc
#   make install         programs, libtern (static + shared), its header and pkg-config file, and
#                        the man pages under PREFIX (/usr/local), staged under DESTDIR if given

CC ?= cc
BUILD ?= build
PKGS := libevent libevent_pthreads libevent_openssl openssl inih jansson libcrypt libgsasl libunbound
OPT ?= -O2
SAN ?=
CFLAGS ?=
CPPFLAGS ?=
LDFLAGS ?=

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) $(shell pkg-config --libs readline 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
ALL_CFLAGS := -std=c17 $(WARN) $(OPT) -g $(SAN) -D_GNU_SOURCE -Isrc -Iinclude $(PKG_CFLAGS) \
              $(CPPFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS := $(SAN) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
VERSION := $(shell sed -n 's/^\#define TERN_VERSION "\(.*\)"/\1/p' src/util/version.h)

MAINS := src/ternd.c src/tern.c
LIB_SRC := $(sort $(wildcard src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# libtern: src/client/ alone (it needs nothing else of tern's but headers), linked against only
# OpenSSL and GNU SASL; the shared one from -fPIC objects of its own, exporting only tern_*.
CLIENT_SRC := $(sort $(wildcard src/client/*.c))
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/%.o)
CLIENT_PIC := $(CLIENT_SRC:%.c=$(BUILD)/pic/%.o)
CLIENT_LIBS := $(shell pkg-config --libs openssl libgsasl 2>/dev/null) -lpthread

# keep test objects: make would delete them as intermediates and relink every time
.SECONDARY:

.PHONY: all run check bench fuzz unit format format-check deps clean install-deps libtern install

all: $(BUILD)/ternd $(BUILD)/tern libtern

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libtern-core.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/ternd: $(BUILD)/src/ternd.o $(BUILD)/libtern-core.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tern: $(BUILD)/src/tern.o $(BUILD)/libtern-core.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

libtern: $(BUILD)/libtern.a $(BUILD)/libtern.so.0 $(BUILD)/libtern.pc

$(BUILD)/libtern.a: $(CLIENT_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libtern.so.0: $(CLIENT_PIC) src/client/libtern.map
	$(CC) $(ALL_LDFLAGS) -shared -Wl,-soname,libtern.so.0 \
	  -Wl,--version-script=src/client/libtern.map -o $@ $(CLIENT_PIC) $(CLIENT_LIBS)
	ln -sf libtern.so.0 $(BUILD)/libtern.so

# libtern.pc names the directories it will be installed in: made again by make install.
$(BUILD)/libtern.pc: libtern.pc.in src/util/version.h Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' libtern.pc.in > $@

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	  $(DESTDIR)$(INCLUDEDIR)/tern $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
	  $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 755 $(BUILD)/tern $(DESTDIR)$(BINDIR)/tern
	install -m 755 $(BUILD)/ternd $(DESTDIR)$(SBINDIR)/ternd
	install -m 644 $(BUILD)/libtern.a $(DESTDIR)$(LIBDIR)/libtern.a
	install -m 755 $(BUILD)/libtern.so.0 $(DESTDIR)$(LIBDIR)/libtern.so.0
	ln -sf libtern.so.0 $(DESTDIR)$(LIBDIR)/libtern.so
	install -m 644 include/tern/client.h $(DESTDIR)$(INCLUDEDIR)/tern/client.h
	sed -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' libtern.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/libtern.pc
	for s in 1 3 5 8; do \
	  for m in doc/*.$$s; do [ -f "$$m" ] && install -m 644 "$$m" $(DESTDIR)$(MANDIR)/man$$s/; done; \
	done; true

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libtern-core.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) -lcmocka

unit: $(UNIT_BIN)

# libFuzzer harnesses: clang only, with ASan+UBSan, linked against the sources directly.
fuzz:
	@mkdir -p build/fuzz
	@for f in $(FUZZ_SRC); do \
	  n=$$(basename $$f .c); \
	  echo "  FUZZ $$n"; \
	  clang -std=c17 -g -O1 -D_GNU_SOURCE -Isrc -Iinclude $(PKG_CFLAGS) \
	    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o build/fuzz/$$n $$f $(filter-out $(MAINS),$(LIB_SRC)) $(PKG_LIBS) -lpthread || exit 1; \
	done

install-deps deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/make-run.sh

check: deps
	@tests/run-all.sh

bench: deps
	@$(MAKE) --no-print-directory all
	@bench/run.sh
	@bench/tls-auth.sh
	@bench/shared.sh
	@bench/audit.sh
	@bench/client.sh
	@bench/relay.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') && echo "format-check: ok"

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLIENT_PIC:.o=.d) $(BUILD)/src/ternd.d $(BUILD)/src/tern.d \
         $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d)

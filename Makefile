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

CC ?= cc
BUILD ?= build
PKGS := libevent libevent_pthreads libevent_openssl openssl inih jansson libcrypt libgsasl
OPT ?= -O2
SAN ?=
CFLAGS ?=
CPPFLAGS ?=
LDFLAGS ?=

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter
ALL_CFLAGS := -std=c17 $(WARN) $(OPT) -g $(SAN) -D_GNU_SOURCE -Isrc -Iinclude $(PKG_CFLAGS) \
              $(CPPFLAGS) $(CFLAGS) -MMD -MP
ALL_LDFLAGS := $(SAN) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread

MAINS := src/ternd.c src/tern.c
LIB_SRC := $(sort $(wildcard src/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))

# keep test objects: make would delete them as intermediates and relink every time
.SECONDARY:

.PHONY: all run check bench fuzz unit format format-check deps clean install-deps

all: $(BUILD)/ternd $(BUILD)/tern

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

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h') && echo "format-check: ok"

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/ternd.d $(BUILD)/src/tern.d \
         $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%.d)

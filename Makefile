# ofs: the extension (PGXS), the client library and the test, demo and bench
# entry points.  `make demo`, `make test` and `make bench` install missing
# Debian packages first (scripts/deps.sh), so they work on a fresh machine;
# `make` and `make install` only build and install.

EXTENSION  = ofs
MODULE_big = ofs
OBJS       = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c bgworker/*.c)))
# Install scripts: ofs--V.sql is the full script of version V (1.0 is frozen
# as released; the newest is ofs.control's default_version), ofs--A--B.sql
# upgrades A to B.  docs/DESIGN.md, "Versions and upgrades", says how to add one.
DATA       = $(sort $(wildcard ofs--*.sql))
PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/bgworker
SHLIB_LINK = -lwebsockets -ljansson -luv -Wl,--version-script=ofs.map
# The library exports only what PostgreSQL looks up by name: _PG_init, the
# module magic, the background workers' entry points and the SQL-callable
# functions with their info records (src/sql_compat.c says why 1.0's bare
# names are among them).  Everything else stays inside the library, so no
# name of ofs can meet one of libwebsockets, jansson or libuv.
EXTRA_CLEAN = ofs.map
# Warnings are errors where the compiler is known (CI: make test WERROR=-Werror),
# not for packagers whose compilers warn differently.
WERROR    ?=
PG_CFLAGS  = -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
             -Wno-missing-field-initializers -Wno-sign-compare $(WERROR)

# pg_regress suites: test/sql/*.sql against test/expected/*.out.
REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
REGRESS_OPTS = --inputdir=test --load-extension=ofs
# Isolation specs: test/specs/*.spec against test/expected/*.out.
ISOLATION      = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=test --load-extension=ofs

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

.PHONY: deps test demo bench build-install fuzz soak

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# Without the server development files PGXS is absent.  all and install do
# not install packages behind the user's back: make deps (or make test,
# demo, bench) does.
all install:
	@echo "ofs: PostgreSQL's server development files are missing: run 'make deps' as root (Debian package postgresql-server-dev-15)" >&2
	@exit 1
endif

ofs.map: $(sort $(wildcard src/*.c bgworker/*.c))
	{ echo '{ global: _PG_init; Pg_magic_func;'; \
	  sed -n -e 's/^\(ofs_[a-z_]*_main\)(Datum.*/\1;/p' \
	         -e 's/^PG_FUNCTION_INFO_V1(\([a-z_0-9]*\));/\1; pg_finfo_\1;/p' $^; \
	  sed -n 's/^\tX(\([a-z_0-9]*\)).*/\1; pg_finfo_\1;/p' src/sql_compat.c; \
	  echo 'local: *; };'; } >$@
$(shlib): ofs.map

# Every object depends on the headers (PGXS tracks none): a struct that
# changes size must not be compiled into one file and not another.
$(OBJS): $(wildcard src/*.h bgworker/*.h)

deps:
	@scripts/deps.sh

# The client (libofs, ofs-cli) builds and installs with the extension.
all: client-all
install: client-install
client-all:
	$(MAKE) -C client all
client-install:
	$(MAKE) -C client install
.PHONY: client-all client-install

# build-install builds and installs the extension where the local server
# finds it; the throwaway test clusters use the installed PostgreSQL binaries.
build-install: deps
	$(MAKE) all
	@if [ ! -w "$$($(PG_CONFIG) --pkglibdir)" ] || [ ! -w "$$($(PG_CONFIG) --sharedir)/extension" ]; then \
	  echo "ofs: installing into $$($(PG_CONFIG) --pkglibdir) needs root: run 'make install' as root once, or run this target as root" >&2; \
	  cmp -s ofs.so "$$($(PG_CONFIG) --pkglibdir)/ofs.so" || exit 1; \
	  for f in ofs.control $(DATA); do cmp -s $$f "$$($(PG_CONFIG) --sharedir)/extension/$$f" || exit 1; done; \
	else $(MAKE) install; fi

test: build-install
	test/run.sh

# make demo KEEP=1 leaves the demo's origin running (its /status and /metrics pages) until Ctrl-C.
demo: build-install
	OFS_DEMO_KEEP=$(KEEP) demo/demo.sh

bench: build-install
	bench/run.sh

# The fuzz target of the sync worker's message handling, for FUZZ_SECONDS
# (0: until stopped); make test runs it for a minute.
FUZZ_SECONDS ?= 600
fuzz: deps
	test/fuzz/run.sh $(FUZZ_SECONDS)

# Minutes of many devices and faults against a cluster of its own.
soak: build-install
	test/soak/soak.sh

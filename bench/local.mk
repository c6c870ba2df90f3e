# Benchmark harness: `make bench` compares the preload library with glibc.
# Included from the top Makefile.am (non-recursive: paths are from the top),
# after it has set EXTRA_PROGRAMS, EXTRA_DIST and CLEANFILES.
#
# The programs are EXTRA_PROGRAMS, so plain `make` and `make check` do not
# build them; the bench target asks for them.

EXTRA_PROGRAMS += bench/labbench bench/churn bench/xfree bench/realloc \
	bench/fastpath bench/footprint bench/scale bench/pagebench bench/forkgrown \
	bench/apipair

bench_labbench_SOURCES = bench/labbench.c
bench_labbench_LDADD = -lm

# The workloads are plain malloc/free programs, optimised as in real use and
# linked against nothing of ours: LD_PRELOAD alone picks the allocator. Each
# program sets its own _LDADD, so a top-level LDADD never links them to us.
BENCH_WORKLOAD_CFLAGS = $(AM_CFLAGS) -O2 -pthread
bench_churn_SOURCES = bench/churn.c bench/benchutil.h
bench_churn_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_churn_LDADD = -lpthread
bench_xfree_SOURCES = bench/xfree.c bench/benchutil.h
bench_xfree_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_xfree_LDADD = -lpthread
bench_realloc_SOURCES = bench/realloc.c bench/benchutil.h
bench_realloc_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_realloc_LDADD = -lpthread
bench_fastpath_SOURCES = bench/fastpath.c bench/benchutil.h
bench_fastpath_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_fastpath_LDADD = -lpthread
bench_footprint_SOURCES = bench/footprint.c bench/benchutil.h
bench_footprint_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_footprint_LDADD = -lpthread
bench_scale_SOURCES = bench/scale.c bench/benchutil.h
bench_scale_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_scale_LDADD = -lpthread
bench_forkgrown_SOURCES = bench/forkgrown.c bench/benchutil.h
bench_forkgrown_CFLAGS = $(BENCH_WORKLOAD_CFLAGS)
bench_forkgrown_LDADD = -lpthread

# The exit-status helper preload (bench/statexit.c): loaded after the
# allocator, it reports each program's VmPTE and VmRSS at exit. A plain
# shared object, not a libtool one: it is never installed, and without the
# sanitizer flags of AM_CFLAGS, since a preload cannot carry ASan.
bench/statexit.so: $(srcdir)/bench/statexit.c
	@$(MKDIR_P) bench
	$(AM_V_CC)$(CC) -std=gnu11 -Wall -Wextra $(WERROR_CFLAGS) $(CFLAGS) -O2 -fPIC \
		-shared -o $@ $(srcdir)/bench/statexit.c

# The page API's latency and throughput: linked to the API library itself
# (`make pagebench`, then bench/pagebench; not part of the make bench table).
bench_pagebench_SOURCES = bench/pagebench.c
bench_pagebench_CFLAGS = $(AM_CFLAGS) -O2
bench_pagebench_LDADD = src/liblabyrinth.la -lpthread

.PHONY: pagebench
pagebench: bench/pagebench$(EXEEXT)

# The small fast path through the API, private labyrinth or default, for
# bench-instructions: a real executable (-no-install), which callgrind runs.
bench_apipair_SOURCES = bench/apipair.c bench/benchutil.h
bench_apipair_CFLAGS = $(AM_CFLAGS) -O2
bench_apipair_LDADD = src/liblabyrinth.la
bench_apipair_LDFLAGS = -no-install

EXTRA_DIST += bench/pagebench.c bench/README.md bench/run.sh bench/alloc.py bench/gap.py bench/sqlite.sql \
	bench/gencfile.awk bench/labbench.c bench/benchutil.h bench/churn.c \
	bench/xfree.c bench/realloc.c bench/fastpath.c bench/footprint.c bench/scale.c \
	bench/redis.sh bench/forkgrown.c bench/statexit.c bench/forkshell.sh bench/autoproj.sh \
	bench/syscalls.sh bench/samplecost.sh bench/instructions.sh bench/apipair.c

# Automake cleans the programs it installs, not EXTRA_PROGRAMS.
CLEANFILES += bench/labbench$(EXEEXT) bench/churn$(EXEEXT) bench/xfree$(EXEEXT) \
	bench/realloc$(EXEEXT) bench/fastpath$(EXEEXT) bench/footprint$(EXEEXT) \
	bench/scale$(EXEEXT) bench/pagebench$(EXEEXT) bench/forkgrown$(EXEEXT) \
	bench/apipair$(EXEEXT) bench/statexit.so

# BENCH_RUNS, BENCH_ONLY, BENCH_TIMEOUT and BENCH_SLOW_RUNS reach run.sh whether they are set
# in the environment or on the command line (`make bench BENCH_RUNS=3`).
BENCH_PRELOAD = $(abs_top_builddir)/preload/.libs/liblabyrinth-preload.so

.PHONY: bench
bench: preload/liblabyrinth-preload.la bench/labbench$(EXEEXT) \
		bench/churn$(EXEEXT) bench/xfree$(EXEEXT) bench/realloc$(EXEEXT) \
		bench/fastpath$(EXEEXT) bench/footprint$(EXEEXT) bench/scale$(EXEEXT) \
		bench/forkgrown$(EXEEXT) bench/statexit.so
	$(AM_V_at)BENCH_RUNS="$(BENCH_RUNS)" BENCH_ONLY="$(BENCH_ONLY)" \
	BENCH_TIMEOUT="$(BENCH_TIMEOUT)" BENCH_SLOW_RUNS="$(BENCH_SLOW_RUNS)" \
	$(SHELL) $(srcdir)/bench/run.sh -p "$(BENCH_PRELOAD)" \
		-s "$(abs_top_srcdir)" -b "$(abs_top_builddir)"

# What each default protection costs on the workloads furthest from glibc
# (not part of make bench: it runs 20 rows).
.PHONY: bench-protections
bench-protections: preload/liblabyrinth-preload.la bench/labbench$(EXEEXT) \
		bench/churn$(EXEEXT) bench/fastpath$(EXEEXT)
	$(AM_V_at)BENCH_RUNS="$(BENCH_RUNS)" BENCH_TIMEOUT="$(BENCH_TIMEOUT)" \
	$(SHELL) $(srcdir)/bench/run.sh -c -p "$(BENCH_PRELOAD)" \
		-s "$(abs_top_srcdir)" -b "$(abs_top_builddir)"

# Instructions per malloc(16)/free pair and per churn step, labyrinth and
# glibc, counted by callgrind over the loop only (bench/instructions.sh).
# Count a --disable-valgrind build: otherwise labyrinth sees valgrind and
# adds its memcheck requests, which no user runs.
.PHONY: bench-instructions
bench-instructions: preload/liblabyrinth-preload.la bench/fastpath$(EXEEXT) bench/churn$(EXEEXT) \
		bench/apipair$(EXEEXT)
	$(AM_V_at)$(SHELL) $(srcdir)/bench/instructions.sh -p "$(BENCH_PRELOAD)" \
		-b "$(abs_top_builddir)"

# kvstudio — `make run` opens the studio on sample data, `make test` runs everything.
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
SAN     ?=
CFLAGS  ?= $(OPT) -g
PKG_CONFIG ?= pkg-config
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CPPFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Iengine -Iengine/io -Iengine/cache -Iengine/model -Iapp -Iviews \
            -I/usr/include/x86_64-linux-gnu $(shell $(PKG_CONFIG) --cflags ncursesw 2>/dev/null)
ALL_CFLAGS := $(CPPFLAGS) $(CFLAGS) $(WARN) $(SAN) -pthread -MMD -MP
BLAS_LIBS := $(shell $(PKG_CONFIG) --libs lapacke openblas 2>/dev/null || echo -llapacke -lopenblas)
ENGINE_LIBS := $(BLAS_LIBS) -ljansson -lpcre2-8 -lutf8proc -lm -pthread
UI_LIBS := $(shell $(PKG_CONFIG) --libs ncursesw 2>/dev/null || echo -lncursesw -ltinfo) -lreadline

ENGINE_SRC := $(wildcard engine/*.c engine/io/*.c engine/cache/*.c engine/methods/*.c engine/calib/*.c engine/model/*.c engine/tok/*.c)
APP_SRC    := $(filter-out app/main.c,$(wildcard app/*.c)) $(wildcard views/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
APP_OBJ    := $(APP_SRC:%.c=$(BUILD)/%.o)
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBKVQ     := $(BUILD)/libkvq.a
LIBAPP     := $(BUILD)/libkvapp.a
KVSTUDIO   := $(BUILD)/kvstudio

DEBS := libncurses-dev libreadline-dev liblapacke-dev libopenblas-dev libcmocka-dev \
        libjansson-dev libpcre2-dev libutf8proc-dev tmux pkg-config python3
# only `make scale-check` needs these (tools/make_trace.py); `make test` never does
SCALE_DEBS := python3-numpy
# only `make bench`'s PyTorch row (bench/torch_prefill.py) needs these; `make test` never does
BENCH_DEBS := python3-torch python3-numpy
# scratch for synthetic checkpoints (tools/make_bigmodel.py), kept between runs: `make bench`
# (qwen2.5-0.5b, 1 GB), `make bigmodel-check` (llama3.1-8b, 16 GB)
BIG_DIR ?= /tmp/kvs-big
# pkg-config module -> the package of DEBS that ships it; check-deps looks these up
# before anything compiles, so a machine without them is told to run `make deps`
# instead of failing on a missing header.
BUILD_PCS := ncursesw:libncurses-dev readline:libreadline-dev lapacke:liblapacke-dev \
             openblas:libopenblas-dev cmocka:libcmocka-dev jansson:libjansson-dev \
             libpcre2-8:libpcre2-dev libutf8proc:libutf8proc-dev
# Node.js and npm run the tokenizer reference test (tests/tok/); Debian's
# packages are installed only when no node/npm is on PATH already.
NODE_DEBS := nodejs npm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps check-deps run test unit e2e tui asan bench fuzz fuzz-build valgrind clean peers scale-check docs docs-check bigmodel-check
all: $(KVSTUDIO) $(TEST_BIN)

# Without pkg-config itself the modules cannot be asked: dpkg says which packages are absent.
check-deps:
	@missing=""; pc=1; command -v $(PKG_CONFIG) >/dev/null 2>&1 || { pc=0; missing=" pkg-config"; }; \
	for e in $(BUILD_PCS); do \
	  if [ $$pc = 1 ]; then $(PKG_CONFIG) --exists $${e%%:*} || missing="$$missing $${e#*:}"; \
	  else dpkg -s $${e#*:} >/dev/null 2>&1 || missing="$$missing $${e#*:}"; fi; \
	done; \
	[ -z "$$missing" ] || { echo "missing packages:$$missing; run \`make deps\` (apt-get install, via sudo when not root)" >&2; exit 2; }

deps:
	@missing=""; for p in $(DEBS) $(EXTRA_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	{ command -v node && command -v npm; } >/dev/null 2>&1 || missing="$$missing $(NODE_DEBS)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BUILD)/%.o: %.c | check-deps
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIBKVQ): $(ENGINE_OBJ)
	@rm -f $@; ar rcs $@ $^

$(LIBAPP): $(APP_OBJ)
	@rm -f $@; ar rcs $@ $^

$(KVSTUDIO): $(BUILD)/app/main.o $(LIBAPP) $(LIBKVQ)
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) -o $@ $^ $(UI_LIBS) $(ENGINE_LIBS)

$(BUILD)/tests/%: tests/%.c $(LIBAPP) $(LIBKVQ)
	@mkdir -p $(dir $@)
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(LIBAPP) $(LIBKVQ) -lcmocka $(UI_LIBS) $(ENGINE_LIBS)

# test_bench checks the bench's timing core (bench/bench_core.c) on a fake clock
$(BUILD)/tests/test_bench: tests/test_bench.c $(BUILD)/bench/bench_core.o $(LIBAPP) $(LIBKVQ)
	@mkdir -p $(dir $@)
	@echo "LD $@"
	@$(CC) $(ALL_CFLAGS) -Itests -Ibench -o $@ $< $(BUILD)/bench/bench_core.o $(LIBAPP) $(LIBKVQ) -lcmocka $(UI_LIBS) $(ENGINE_LIBS)

# the build runs in a second make, after deps: pkg-config's flags are read when make starts
run: deps
	@$(MAKE) --no-print-directory $(KVSTUDIO)
	./$(KVSTUDIO) sample_data/traces/code-1k.safetensors

# unit tests (cmocka), then end-to-end batch scripts, then the TUI through tmux
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory unit e2e tui

unit: $(TEST_BIN)
	@fail=0; for t in $(TEST_BIN); do echo "== $$t"; KVQ_BUILD=$(BUILD) $$t || fail=1; done; exit $$fail

e2e: $(KVSTUDIO)
	@fail=0; for t in $(sort $(filter-out tests/e2e/lib.sh,$(wildcard tests/e2e/*.sh))); do echo "== $$t"; KVSTUDIO=./$(KVSTUDIO) bash $$t || fail=1; done; exit $$fail

tui: $(KVSTUDIO)
	@fail=0; for t in $(sort $(filter-out tests/tui/lib.sh,$(wildcard tests/tui/*.sh))); do echo "== $$t"; KVSTUDIO=./$(KVSTUDIO) bash $$t || fail=1; done; exit $$fail

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  all unit e2e

bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/bench/bench $(BUILD)/bench/tok_bench
	@mkdir -p bench
	./$(BUILD)/bench/bench
	bash bench/tok_bench.sh $(BUILD)
	@if [ -f $(GGML_PEER)/ggml/src/libggml-cpu.a ] && [ -f $(GGML_SRC)/ggml/include/ggml.h ]; then \
	  $(MAKE) --no-print-directory $(BUILD)/bench/ggml_bench && ./$(BUILD)/bench/ggml_bench; \
	else echo "ggml rows skipped: run \`make peers\` (builds ggml outside the tree; build-peers/ggml and build-peers/llama.cpp link to it)"; fi
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(BENCH_DEBS)"
	@py=$$(for p in python3 /usr/bin/python3; do $$p -c "import torch, numpy" 2>/dev/null && { echo $$p; break; }; done); \
	if [ -n "$$py" ]; then $(MAKE) --no-print-directory $(BUILD)/bench/torch_bench && \
	  $$py tools/make_bigmodel.py --shape qwen2.5-0.5b $(BIG_DIR)/qwen2.5-0.5b && \
	  ./$(BUILD)/bench/torch_bench $(BIG_DIR)/qwen2.5-0.5b $$py; \
	else echo "torch row skipped: no python3 with torch and numpy ($(BENCH_DEBS))"; fi

# The ggml side of `make bench` (bench/ggml_bench.c), linked with the ggml
# build that `make peers` leaves outside the tree; never part of `make all`.
GGML_PEER := build-peers/ggml
GGML_SRC  := build-peers/llama.cpp
GGML_LIBS := $(GGML_PEER)/ggml/src/libggml-cpu.a $(GGML_PEER)/ggml/src/libggml-base.a
BENCH_OBJS := $(BUILD)/bench/bench_core.o $(BUILD)/bench/bench_data.o
$(BUILD)/bench/ggml_bench: bench/ggml_bench.c $(BENCH_OBJS) $(LIBKVQ) $(GGML_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -Ibench -I$(GGML_SRC)/ggml/include \
	  -DGGML_COMMIT='"'$$(git -C $(GGML_SRC) rev-parse HEAD)'"' -o $@ $< $(BENCH_OBJS) \
	  $(LIBKVQ) $(GGML_LIBS) -lstdc++ $(ENGINE_LIBS)

$(BUILD)/bench/torch_bench: bench/torch_bench.c $(BENCH_OBJS) $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -Ibench -o $@ $< $(BENCH_OBJS) $(LIBKVQ) $(ENGINE_LIBS)

$(BUILD)/bench/tok_bench: bench/tok_bench.c $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -o $@ $< $(LIBKVQ) $(ENGINE_LIBS)

$(BUILD)/bench/bench: bench/bench.c $(BENCH_OBJS) $(LIBAPP) $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O3 -Ibench -o $@ $< $(BENCH_OBJS) $(LIBAPP) $(LIBKVQ) $(UI_LIBS) $(ENGINE_LIBS)

# Real sizes (issue 15): synthetic S1/S2/S3 traces (1.1 / 4.4 / 3.0 GB) under
# SCALE_DIR (default /var/tmp/kvstudio-scale, deleted afterwards), wall time,
# CPU time and peak RssAnon of each command; see tools/scale_check.sh. Not in `make test`.
scale-check:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(SCALE_DEBS)"
	@$(MAKE) --no-print-directory $(KVSTUDIO)
	KVSTUDIO=./$(KVSTUDIO) bash tools/scale_check.sh

# Issue 13: an 8B-shaped bf16 checkpoint (Llama-3.1-8B, 16 GB; tools/make_bigmodel.py
# writes it under BIG_DIR if absent) through `kvstudio ppl --tokens` on 64 ids: peak RSS
# (VmHWM) with RssFile / RssAnon, wall and CPU time, tokens/s (tools/bigmodel_check.py).
# Not in `make test`; BIGMODEL_CLEAN=1 deletes the checkpoint afterwards.
bigmodel-check:
	@$(MAKE) --no-print-directory deps EXTRA_DEBS="$(SCALE_DEBS)"
	@$(MAKE) --no-print-directory $(KVSTUDIO)
	@py=$$(for p in python3 /usr/bin/python3; do $$p -c "import numpy" 2>/dev/null && { echo $$p; break; }; done); \
	[ -n "$$py" ] || { echo "bigmodel-check: no python3 with numpy ($(SCALE_DEBS))" >&2; exit 2; }; \
	KVSTUDIO=./$(KVSTUDIO) BIG_DIR=$(BIG_DIR) nice $$py tools/bigmodel_check.py

clean:
	rm -rf build build-asan build-fuzz build-peers

# README.md's figures: `make docs` re-runs every command of tools/readme_figures.tsv with this
# build and rewrites its region (the methods and ppl tables take CPU minutes; `make docs
# DOCS=--cheap` skips them, `make docs DOCS=NAME` does one region); `make docs-check` re-runs
# the cheap regions and a few rows of the slow ones (about a minute) and fails on a figure
# outside its tolerance.
DOCS ?=
docs: deps
	@$(MAKE) --no-print-directory $(KVSTUDIO)
	KVSTUDIO=./$(KVSTUDIO) python3 tools/readme_gen.py $(DOCS)

docs-check: deps
	@$(MAKE) --no-print-directory $(KVSTUDIO)
	KVSTUDIO=./$(KVSTUDIO) python3 tools/readme_gen.py --check

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- reliability (issue 9): libFuzzer targets and valgrind ----
# `make fuzz FUZZ_SECONDS=N` builds fuzz/fuzz_*.c with clang into build-fuzz/
# (ASan + UBSan + libFuzzer) and runs each target for N seconds on seeds from
# tests/data/ and fuzz/corpus/ (fuzz/run.sh). Not part of `make test`.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang-14
# The fuzz build runs the scalar paths: clang-14 rejects
# __builtin_cpu_supports("f16c") (engine/simd.c), so CPU detection says no.
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
            '-D__builtin_cpu_supports(f)=0'
FUZZ_NAMES := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))

fuzz: deps
	@missing=""; for p in clang-14 libclang-rt-14-dev; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN)" fuzz-build
	@bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

fuzz-build: $(FUZZ_NAMES:%=$(BUILD)/fuzz/%)

$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz_util.h $(LIBAPP) $(LIBKVQ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -o $@ $< $(LIBAPP) $(LIBKVQ) $(UI_LIBS) $(ENGINE_LIBS)

# Every unit test binary under valgrind (memcheck, leaks included); only
# OpenBLAS/ncurses internals are suppressed (tests/valgrind.supp). Slow
# (20-50x): `make valgrind VALGRIND_TESTS="build/tests/test_trace ..."` for a subset.
VALGRIND_TESTS ?= $(TEST_BIN)
VALGRIND := valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --suppressions=tests/valgrind.supp --quiet
valgrind: deps
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind; }
	@$(MAKE) --no-print-directory $(VALGRIND_TESTS)
	@fail=0; for t in $(VALGRIND_TESTS); do echo "== valgrind $$t"; \
	  KVQ_BUILD=$(BUILD) OPENBLAS_NUM_THREADS=1 $(VALGRIND) $$t || fail=1; done; exit $$fail

# ---- peers (issue 14): the llama.cpp formats against the real ggml ----
# tools/peers.sh fetches node-llama-cpp@3.21.1 with npm, clones the llama.cpp
# release it bundles and builds ggml's CPU library, all in a cache outside the
# tree (~/.cache/kvstudio/peers); build-peers/ gets the harness
# (tests/peers/ggml_peer.c), which compares codes and decoded values of every
# llamacpp:* format with ggml's own from_float / to_float on the sample traces.
PEERS_TOOLS := cmake:cmake c++:g++ git:git npm:npm
peers: deps $(LIBKVQ)
	@missing=""; for t in $(PEERS_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@bash tools/peers.sh $(BUILD)

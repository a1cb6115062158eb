# The front door. Every target only wraps CMake (see README.md); a plain
#   cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build
# builds the same thing.
SHELL := /bin/bash
PREFIX ?= /usr/local
JOBS ?= $(shell nproc)
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: all deps build demo test test-sanitize test-asan test-tsan fuzz bench install format clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

demo: build
	@build/release/examples/tessera-demo

test: build
	@ctest --preset release

test-asan: deps
	@cmake --preset asan-ubsan >/dev/null
	@cmake --build --preset asan-ubsan -j $(JOBS)
	@ctest --preset asan-ubsan

test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS)
	@ctest --preset tsan

test-sanitize: test-asan test-tsan

# libFuzzer on every decoder of bytes from other processes, FUZZ_SECONDS each (default 60).
fuzz: deps
	@cmake --preset fuzz >/dev/null
	@cmake --build --preset fuzz -j $(JOBS)
	@build/fuzz/tests/fuzz/fuzz_seeds build/fuzz/corpus
	@for t in fuzz_message fuzz_graph; do \
	  build/fuzz/tests/fuzz/$$t -max_total_time=$${FUZZ_SECONDS:-60} -print_final_stats=1 build/fuzz/corpus/$$t || exit 1; \
	done

bench: build
	@benchmarks/run all

install: build
	@cmake --install build/release --prefix $(PREFIX)

format:
	@git ls-files '*.hpp' '*.cpp' | xargs clang-format -i

clean:
	@rm -rf build

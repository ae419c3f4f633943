# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv

.PHONY: demo test deps test-rust lint bench-runtime sanitize clean

## demo: build, list the devices, and run the runtime demo on the built-in software NPU
demo:
	$(CARGO) build --release -p knpu-cli -p knpu --examples --bins
	./target/release/knpu devices
	./target/release/examples/02-streams

## test: install what the tests need, then run every test (Rust; C and Python as they land)
test: deps lint test-rust

deps:
	@bash scripts/ensure-libclang.sh

test-rust:
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## lint: formatting, clippy and docs, as CI expects them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

## bench-runtime: the runtime suite as JSON Lines
bench-runtime:
	$(CARGO) build --release -p knpu-cli
	./target/release/knpu bench runtime --json

## sanitize: Miri on the allocator and the simulator's memory model, each fuzz target for
## FUZZ_SECONDS, and ThreadSanitizer on the reliability stress tests; logs in target/sanitize/
FUZZ_SECONDS ?= 60
SANITIZE_LOGS := target/sanitize
sanitize:
	mkdir -p $(SANITIZE_LOGS)
	rustup component add --toolchain nightly miri rust-src
	$(CARGO) +nightly miri setup
	timeout 1200 $(CARGO) +nightly miri test -p knpu-driver-sim --lib memory:: 2>&1 | tee $(SANITIZE_LOGS)/miri-sim-memory.log
	timeout 1200 $(CARGO) +nightly miri test -p knpu --lib allocator:: 2>&1 | tee $(SANITIZE_LOGS)/miri-allocator.log
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in queue_submit op_shapes; do \
	  mkdir -p corpus/$$t; \
	  timeout $$(( $(FUZZ_SECONDS) + 1200 )) $(CARGO) +nightly fuzz run $$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=20 2>&1 | tee ../$(SANITIZE_LOGS)/fuzz-$$t.log; \
	done
	RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" TSAN_OPTIONS="halt_on_error=0" \
	  timeout 2400 $(CARGO) +nightly test -Zbuild-std --target x86_64-unknown-linux-gnu \
	  --target-dir target/tsan -p knpu --test reliability -- stress:: 2>&1 | tee $(SANITIZE_LOGS)/tsan-stress.log

clean:
	$(CARGO) clean
	rm -rf $(VENV)

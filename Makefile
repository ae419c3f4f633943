# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv

.PHONY: demo test deps test-rust lint bench-runtime clean

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

clean:
	$(CARGO) clean
	rm -rf $(VENV)

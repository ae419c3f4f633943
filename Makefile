# The two commands a newcomer needs: `make demo` and `make test`.
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv

.PHONY: demo test deps test-rust lint bench-runtime clean venv python-install test-python

## demo: build, list the devices, and run the runtime demo on the built-in software NPU
demo:
	$(CARGO) build --release -p knpu-cli -p knpu --examples --bins
	./target/release/knpu devices
	./target/release/examples/02-streams

## test: install what the tests need, then run every test (Rust; C and Python as they land)
test: deps lint test-rust test-python

deps:
	@bash scripts/ensure-libclang.sh

test-rust:
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## venv: a local virtualenv (.venv) with what the Python build and tests need
venv: $(VENV)/.knpu-deps

$(VENV)/.knpu-deps: python/requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r python/requirements-dev.txt
	touch $@

## python-install: build the extension with maturin and install `knpu` into .venv
python-install: venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop -q -m python/Cargo.toml

## test-python: pytest (no tests collected counts as failure) and the stubs against the module
test-python: python-install
	cd python && ../$(VENV)/bin/python -m pytest tests -q -p no:cacheprovider; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc
	$(VENV)/bin/python -m mypy.stubtest knpu --allowlist python/stubtest-allowlist.txt

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

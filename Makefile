# Shortcuts over scripts/ (the scripts are the source of truth; CI runs .ci/run).
.PHONY: setup demo test lint bench wheel ci

setup:
	bash scripts/setup.sh

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

lint:
	PYO3_PYTHON=$(CURDIR)/.venv/bin/python cargo fmt --all --check
	PYO3_PYTHON=$(CURDIR)/.venv/bin/python cargo clippy --workspace --all-targets -- -D warnings
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/python -m mypy.stubtest semanticcache._native

bench:
	.venv/bin/python -m pytest benches --benchmark-enable --benchmark-only -p no:randomly

wheel:
	.venv/bin/maturin build --release --out dist

ci:
	bash .ci/run

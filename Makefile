# Routebook — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCKS := requirements/runtime.txt requirements/dev.txt

.PHONY: run worker demo test migrate revision bench lint format lock clean

# The virtualenv is rebuilt only when a lock file changes; installs are hash-checked.
$(STAMP): $(LOCKS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements/runtime.txt -r requirements/dev.txt
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m scripts.serve

# A solve worker (more of them, on any host that reaches DATABASE_URL, scale solving out).
worker: $(STAMP)
	$(BIN)/python -m service.worker

# A demo user with example scenarios and a solved plan; prints the playground URL and a token.
demo: $(STAMP)
	$(BIN)/python -m scripts.demo

# TEST_DATABASE_URL names a server to test against; unset, the suite starts an embedded one.
# Test processes (pytest-xdist): one per core and one more, as a third of the suite's time is spent
# waiting on other processes (solves, servers, workers). ARGS come last: `ARGS="-n 0 tests/x.py"`.
TEST_PROCESSES ?= $(shell echo $$(( $$(nproc) + 1 )))
PYTEST_PARALLEL ?= -n $(TEST_PROCESSES) --dist loadgroup
# Byte code is cached even where PYTHONDONTWRITEBYTECODE is set: every test process, server and
# worker imports the same modules, and pytest rewrites every test module's asserts anew without it
# (about 5 CPU seconds a test process).
test: $(STAMP)
	env -u DATABASE_URL -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_PARALLEL) -rfE $(ARGS)

migrate: $(STAMP)
	$(BIN)/python -m scripts.migrate upgrade head

revision: $(STAMP)
	$(BIN)/python -m scripts.migrate revision --autogenerate -m "$(m)"

bench: $(STAMP)
	$(BIN)/python -m scripts.bench_auth
	$(BIN)/python -m scripts.bench_payload
	$(BIN)/python -m scripts.bench_planning
	$(BIN)/python -m scripts.bench_planning --workspace organization --operations list
	$(BIN)/python -m scripts.bench_workspaces
	$(BIN)/python -m scripts.bench_loop
	$(BIN)/python -m scripts.bench_scale $(SCALE_ARGS)
	$(BIN)/python -m scripts.bench_solve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin after editing requirements/*.in (needs pip-tools; hashes only, no index addresses).
lock:
	$(BIN)/python -m pip install --quiet pip-tools
	cd requirements && ../$(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host -o runtime.txt runtime.in
	cd requirements && ../$(BIN)/pip-compile -q --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links --no-emit-trusted-host -o dev.txt dev.in

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The two commands of the README: `make demo` and `make test`.
# Each sets up what it needs first (a virtualenv in .venv; for the browser
# tests, Debian's chromium when run as root and it is missing).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo

.PHONY: demo test test-compiled lint bench browser clean pod-image pod-test pod-test-v2

# The demo installs only what it runs (`.[demo]`); the tests install everything (`.[test]`).
demo: $(DEMO_STAMP)
	$(PY) -m app --mode demo

test: $(STAMP) browser
	$(PY) -m pytest
	$(MAKE) --no-print-directory lint

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The sidecar's hot path compiled by mypyc, as the image has it (build/compiled), and the sidecar's tests run
# against it (.ci/run runs this after `make test`). Needs a C compiler and Python's headers.
test-compiled: $(STAMP)
	$(PY) -m bench.compiled --test

bench: $(STAMP)
	bash bench/run-all.sh

$(DEMO_STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $@

# Real pods with podman (as root; .ci/run runs both after `make test`):
# pod-test on this machine's cgroups, pod-test-v2 on cgroup v2 in a QEMU VM.
pod-image: $(STAMP)
	bash deploy/podman/image.sh

pod-test: $(STAMP)
	bash deploy/podman/pod-test.sh

pod-test-v2: $(STAMP)
	bash deploy/podman/vm/pod-test-v2.sh

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(DEMO_STAMP)  # `.[test]` holds everything `.[demo]` does

# Headless Chromium for the page tests; Playwright drives this one because
# its own browser download cannot run offline.
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: /usr/bin/chromium is missing; the browser tests will be skipped (sudo apt-get install chromium)"; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

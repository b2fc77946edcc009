# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-django test lint typecheck pytest bench soak fuzz clean lock audit

$(STAMP): pyproject.toml
	# A venv left without pip (its creation interrupted) is made again rather than failing every later step.
	$(PY) -m pip --version >/dev/null 2>&1 || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The emulator, the Flask demo shop and a worker on 127.0.0.1 (examples/flask_shop/demo.py); Ctrl-C stops all.
demo: $(STAMP)
	$(PY) -m examples.flask_shop

# The Django example shop with the emulator and a delivery thread on 127.0.0.1 (examples/django_shop); Ctrl-C stops it.
demo-django: $(STAMP)
	$(PY) -m examples.django_shop

test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest

# The reliability suite at its long size (docs/reliability.md); the fast size runs in `make test`.
SOAK_EVENTS ?= 20000
SOAK_EXAMPLES ?= 100000
SOAK_CRASH_ROUNDS ?= 5
SOAK_REPORT ?= $(CURDIR)/soak-report.tsv
soak: $(STAMP)
	rm -f $(SOAK_REPORT)
	MSCLKID_SOAK_EVENTS=$(SOAK_EVENTS) MSCLKID_SOAK_EXAMPLES=$(SOAK_EXAMPLES) MSCLKID_SOAK_REPORT=$(SOAK_REPORT) \
		MSCLKID_SOAK_CRASH_ROUNDS=$(SOAK_CRASH_ROUNDS) \
		$(VENV)/bin/pytest tests/reliability -m reliability -q --timeout=0 -p no:cacheprovider

# Coverage-guided fuzzing (Atheris, installed into the venv on first use) for FUZZ_TIME seconds per harness.
# New inputs go to .fuzz/, never into the committed seed corpora.  Without Atheris: the plain-Python replay.
FUZZ_TIME ?= 60
FUZZ_PY ?= $(PY)
fuzz: $(STAMP)
	@$(FUZZ_PY) -c "import atheris" 2>/dev/null || $(FUZZ_PY) -m pip install -q atheris || { \
		echo "atheris could not be installed here: running the plain-Python replay instead"; \
		$(FUZZ_PY) fuzz/fuzz_cookie.py --replay 100000 && $(FUZZ_PY) fuzz/fuzz_tcf.py --replay 100000; exit $$?; }
	mkdir -p .fuzz/cookie .fuzz/tcf
	$(FUZZ_PY) fuzz/fuzz_cookie.py .fuzz/cookie fuzz/corpus_cookie -max_total_time=$(FUZZ_TIME) -artifact_prefix=.fuzz/
	$(FUZZ_PY) fuzz/fuzz_tcf.py .fuzz/tcf fuzz/corpus_tcf -max_total_time=$(FUZZ_TIME) -artifact_prefix=.fuzz/

bench: $(STAMP)
	# Every benchmark at its default size (several minutes in all); each prints its issue-21 ratio, if it has one.
	for f in benchmarks/*.py; do echo "== $$f"; PYTHONPATH=. $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# S9 supply chain: requirements.lock pins the runtime dependencies (and the postgres/phone/django/asgi/celery extras) with hashes.
lock: $(STAMP)
	$(PY) tools/lock.py

# Needs PyPI's (or OSV's) vulnerability service; --strict fails when any package could not be audited.
audit: $(STAMP)
	$(PY) -m pip install -q pip-audit
	$(VENV)/bin/pip-audit --strict --require-hashes --disable-pip -r requirements.lock

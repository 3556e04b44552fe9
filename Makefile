# Everything a newcomer needs: `make run` (the product) and `make test` (the checks).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install browser run test lint typecheck pytest protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/atelier run

test: install lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# The console's browser tests drive Debian's Chromium (and a CJK font for the zh screenshots); install them
# once where they are missing (CI runs as root on Debian).
browser:
	@test -x /usr/bin/chromium -a -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-zenhei; }

pytest: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

protos: install
	$(PY) -m kit.protogen

clean:
	rm -rf $(VENV) .atelier .pytest_cache .mypy_cache .ruff_cache

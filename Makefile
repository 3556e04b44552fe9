# Everything a newcomer needs: `make run` (the product) and `make test` (the checks).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# ESLint for the console's modules, pinned in package.json/package-lock.json (development only: the console
# itself has no dependencies and no build step).
NODE_STAMP := node_modules/.installed-$(shell sha1sum package-lock.json | cut -c1-12)

.PHONY: install browser run test lint typecheck pytest protos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,embedded]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

run: install
	$(VENV)/bin/atelier run

test: install lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	node_modules/.bin/eslint gateway/web/static/js

typecheck: install
	$(VENV)/bin/mypy

# The console's browser tests drive Debian's Chromium (and a CJK font for the zh screenshots); install them
# once where they are missing (CI runs as root on Debian). Another apt or dpkg process (unattended upgrades,
# a second shell) may hold the package locks: wait up to APT_WAIT seconds for them. `apt-get install` waits by
# itself (DPkg::Lock::Timeout); `apt-get update` does not honour that option for its lists lock, so it is retried
# while, and only while, the failure is a held lock.
CHROMIUM ?= /usr/bin/chromium
CJK_FONT ?= /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc
APT_GET ?= apt-get
APT_WAIT ?= 600
APT_POLL ?= 5
APT := DEBIAN_FRONTEND=noninteractive $(APT_GET) -qq -o DPkg::Lock::Timeout=$(APT_WAIT)

browser:
	@test -x $(CHROMIUM) -a -e $(CJK_FONT) || { \
		start=$$(date +%s); \
		until out=$$($(APT) update 2>&1); do \
			echo "$$out" | grep -q 'Could not get lock' || { echo "$$out" >&2; exit 1; }; \
			[ $$(( $$(date +%s) - start )) -lt $(APT_WAIT) ] || { echo "$$out" >&2; exit 1; }; \
			echo "make browser: another apt process holds its lock; waiting" >&2; sleep $(APT_POLL); \
		done; \
		$(APT) install -y --no-install-recommends chromium fonts-wqy-zenhei; }

pytest: install browser
	$(PY) -m pytest $(PYTEST_ARGS)

protos: install
	$(PY) -m devkit.protogen

clean:
	rm -rf $(VENV) node_modules .atelier .pytest_cache .mypy_cache .ruff_cache

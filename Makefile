# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: demo test test-gateway test-backend bench check venv tools clean

# The venv is rebuilt when the declared dependencies change.
$(STAMP): pyproject.toml backends/sample_django/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet -r backends/sample_django/requirements.txt
	touch $(STAMP)

venv: $(STAMP)

# OS tools the tests drive for real: redis-server (store tests), promtool and the
# prometheus server (deploy/prometheus rules, the scrape test), chromium (the status
# page rendered in a browser). Installed from the OS packages when missing and we are
# allowed to (root on Debian/Ubuntu); otherwise the tests that need them fail loudly.
OS_TOOLS := redis-server:redis-server promtool:prometheus prometheus:prometheus chromium:chromium

tools:
	@missing=""; for pair in $(OS_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing OS packages:$$missing (install them, e.g. apt-get install$$missing)" >&2; exit 1; \
	  fi; \
	fi

demo: $(STAMP)
	$(PY) scripts/demo.py

test: $(STAMP) tools keys/jwt.pub
	$(VENV)/bin/pytest -q -p no:cacheprovider tests
	cd backends/sample_django && ../../$(VENV)/bin/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) bench/run.py

check: $(STAMP) keys/jwt.pub
	$(VENV)/bin/gateway check -c config/gateway.yaml

clean:
	rm -rf $(VENV) build *.egg-info

# The RS256 pair the sample backend signs with and config/gateway.yaml verifies with
# (auth.jwt.public_key_file: keys/jwt.pub). git-ignored; created once, never overwritten.
keys/jwt.pub: | $(STAMP)
	cd backends/sample_django && ../../$(PY) manage.py generate_jwt_keys --dir ../../keys

# backuppc-agent: `make run` and `make test` are the two commands in the README.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-debian-libs test-systemd bench lint check-rules check-shell system-deps venv clean fuzz deb

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# compat mode: the checkout goes on sys.path through a plain .pth file
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

# Installs the Debian packages the tests use when they are missing and we are root.
system-deps:
	sh tests/system-deps.sh

# Set up and run the supervisor in the foreground on its default config.
run: $(STAMP)
	$(BIN)/backuppc-agent run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

PROMTOOL ?= promtool

# Prometheus rules: syntax, promtool unit tests of every alert, the example Prometheus and
# Alertmanager configs.
check-rules: system-deps
	$(PROMTOOL) check rules metrics/backuppc-agent.rules.yml
	$(PROMTOOL) test rules metrics/tests/*.test.yml
	$(PROMTOOL) check config metrics/prometheus.example.yml
	amtool check-config metrics/alertmanager.example.yml

# Every shell script through shellcheck; the systemd units through systemd-analyze
# verify (with a real ExecStart; any warning fails; skipped where not installed).
SHELL_SCRIPTS = $(shell find . \( -path ./.venv -o -path ./.venv-debian -o -path ./build \) -prune -o \( -name '*.sh' \
	-o -path ./initscripts/backuppc-agent -o -path ./initscripts/default-backuppc \
	-o -path ./debian/postinst -o -path ./debian/postrm -o -path ./debian/prerm \
	-o -path ./backuppc_agent/install/files/client/backuppc-agent-gate \) -print)

check-shell: system-deps $(STAMP)
	shellcheck $(SHELL_SCRIPTS)
	sh tests/check-units.sh $(abspath $(BIN)/backuppc-agent)

# Set up and pass every test: exactly what CI runs.
test: system-deps $(STAMP) lint check-rules check-shell
	$(BIN)/python -m pytest --ignore=tests/systemd
	$(MAKE) test-debian-libs
	$(MAKE) test-systemd

# The package's systemd units under a real systemd, on Debian 13 and Debian 12: each
# release's tree (tests/systemd/build-tree.sh, cached in /var/cache/backuppc-agent-tests,
# ~3 min the first time) is copied and booted with systemd-nspawn on a private network.
# As root; skipped without systemd-nspawn or debootstrap.
test-systemd: system-deps $(STAMP)
	$(BIN)/python -m pytest tests/systemd

# The unit tests and the integration tests that import keyring or prometheus_client,
# again on Debian's python3-keyring and python3-prometheus-client (the .deb's Depends;
# .venv has PyPI's current ones): fails if the venv imports any other copy of them.
DEBIAN_LIB_TESTS = tests/unit tests/integration/test_exporter*.py \
	tests/integration/test_unlock.py tests/integration/test_security_secrets.py \
	tests/integration/test_security_metrics.py tests/integration/test_hostile_procfs.py

test-debian-libs: system-deps
	sh tests/debian-libs.sh .venv-debian $(DEBIAN_LIB_TESTS)

# process-exporter is measured beside our exporter when Debian has it (optional).
bench: system-deps $(STAMP)
	sh tests/system-deps.sh prometheus-process-exporter
	$(BIN)/python -m bench

# The Debian package, from the tree as it is (also uncommitted edits): built in a
# copy under build/deb (dpkg-buildpackage writes next to the source), checked
# with lintian: errors, warnings and pedantic tags fail (the ones we mean are
# overridden, with the reason, in debian/*lintian-overrides*). Info tags are shown
# and overridden too, but cannot fail the build: lintian (2.116 and 2.122) counts
# the info tag its python screen masks (dist-info/top_level.txt) as reported.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DEB := dist/backuppc-agent_$(VERSION)_all.deb
DEB_SRC := build/deb/backuppc-agent-$(VERSION)

deb:
	@test "$$(dpkg-parsechangelog -S Version)" = "$(VERSION)" || \
		{ echo "deb: debian/changelog's version is not pyproject's $(VERSION)" >&2; exit 1; }
	rm -rf build/deb && mkdir -p $(DEB_SRC) dist
	tar -c --exclude=./.git --exclude=./.venv --exclude=./.venv-debian --exclude=./build --exclude=./dist \
		--exclude='*.egg-info' --exclude=__pycache__ --exclude='.*_cache' . | tar -x -C $(DEB_SRC)
	# Debian's own interpreters only (not a pyenv or venv python3 on PATH).
	cd $(DEB_SRC) && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage --no-sign -b >../build.log 2>&1 || \
		{ tail -40 ../build.log >&2; exit 1; }
	mv build/deb/backuppc-agent_$(VERSION)_all.deb $(DEB)
	lintian --display-info --pedantic --fail-on error,warning,pedantic $(DEB) || \
		{ echo "deb: lintian is not clean (overrides: debian/*lintian-overrides*, debian/rules)" >&2; exit 1; }
	@echo "built $(DEB)"

clean:
	rm -rf $(VENV) .venv-debian .pytest_cache .mypy_cache .ruff_cache *.egg-info build dist

# Explore the hypothesis fuzz tests afresh with many more examples (not part of make test).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -k "fuzz or hypothesis or any_" tests/unit

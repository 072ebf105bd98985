# The two commands in the README: `make sandbox` and `make test`.
VENV    := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Debian packages the controller needs to boot test hosts and build the simulated driver.
APT_PACKAGES := systemd-container debootstrap gcc make iproute2 openssh-client curl python3-venv
# Only the tests need a browser (they render the fleet picture in headless Chromium), Node.js (it runs
# the gateway's njs router outside nginx for its unit tests, and so does njs's own CLI, the engine nginx runs it
# with), Prometheus (promtool tests the alert
# rules; multihost scrapes a real gateway with it), docker-registry (the stand-in and the registry
# loader pull from and push to a real one in unit tests) and nftables (multihost cuts its GPU hosts off
# from the controller, where its "internet" runs).
TEST_APT_PACKAGES := chromium chromium-driver nodejs njs prometheus mtail docker-registry nftables

.PHONY: setup system-packages test-packages sandbox sandbox-down picture collection role-docs test lint unit molecule faults leftovers clean

setup: system-packages $(VENV)/.installed

# apt-get only for what is missing, so a set-up machine needs no mirror.
define apt_install
	@missing=$$(for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi
endef

system-packages:
	$(call apt_install,$(APT_PACKAGES))

test-packages:
	$(call apt_install,$(TEST_APT_PACKAGES))

$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	ansible-galaxy collection install -r requirements.yml
	touch $@

# Command 1: boot the simulated 8-GPU host, deploy site.yml to it, show the result
# (the plan, one answer through the gateway, the status table and its picture).
sandbox: setup
	ansible-playbook playbooks/sandbox.yml
	ansible-playbook site.yml
	ansible-playbook playbooks/sandbox_report.yml
	ansible-playbook playbooks/status.yml -e ollama_picture=$(CURDIR)/.cache/sandbox/fleet.html
	@echo "The fleet as a picture: file://$(CURDIR)/.cache/sandbox/fleet.html"

# The README's screenshot of the sandbox's status page (after `make sandbox`).
picture: setup test-packages
	mkdir -p docs && python3 tests/helpers/browser.py .cache/sandbox/fleet.html docs/sandbox-fleet.png

sandbox-down:
	python3 tests/harness/nspawn.py down sandbox-gpu1

# The collection ollama.fleet as a tarball another Ansible repository installs offline:
# dist/ollama-fleet-VERSION.tar.gz (README: "Use it from your own repository"; galaxy.yml says what goes in).
collection: setup
	ansible-galaxy collection build --force --output-path dist

# Each role's README.md from its meta/argument_specs.yml and defaults/main.yml (a unit test checks they are current).
role-docs: setup
	python3 tests/helpers/role_readme.py

# Command 2: every test. Each step (lint, pytest, each molecule scenario, leftovers) runs even when
# another failed; a summary table ends it, and the exit is non-zero if any step failed.
test: setup test-packages
	tests/run_all.sh

lint: setup
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .

unit: setup test-packages
	pytest

molecule: setup test-packages
	molecule test --all

# The fault suite alone (it is part of `make test` too), then its results as the table of docs/reliability.md.
faults: setup
	molecule test -s faults
	python3 tests/faults_report.py

# Molecule's destroy must leave no container, overlay mount or bridge behind.
leftovers:
	@left=$$(python3 tests/harness/nspawn.py list | grep -v '"sandbox-' || true); \
	 if [ -n "$$left" ]; then echo "test hosts left running: $$left"; exit 1; fi
	@if ! python3 tests/harness/nspawn.py list | grep -q .; then \
	   ! pgrep -a systemd-nspawn && ! ip link show olt-br0 >/dev/null 2>&1 \
	   || { echo "systemd-nspawn or the olt-br0 bridge outlived the tests"; exit 1; }; fi
	@echo "no test host, nspawn process or bridge left behind"

clean: sandbox-down
	rm -rf $(VENV) .cache tests/gpu_sim/build

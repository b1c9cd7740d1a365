# Django on Debian, by Ansible. `make help` lists the targets.
# Everything a target needs is installed by the target itself (`make toolchain`).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

REPO        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
STATE       := $(REPO)/.state
VENV        := $(STATE)/venv
BIN         := $(VENV)/bin
ENVS        := $(sort $(notdir $(wildcard $(REPO)/inventories/*)))
INVENTORY   := $(REPO)/inventories/$(ENV)
SCENARIOS   := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard $(REPO)/molecule/*/molecule.yml))))
# Debian packages every control node needs (Ansible's venv, SSH), and those only the test-host
# harness needs (ENV=local and Molecule): a control node for real servers never gets the latter.
APT_PACKAGES         := openssh-client python3-venv ca-certificates curl rsync
HARNESS_APT_PACKAGES := systemd-container mmdebstrap apt-cacher-ng nftables iproute2

export ANSIBLE_CONFIG := $(REPO)/ansible/ansible.cfg
export PYTHONPATH     := $(REPO)/harness
export PATH           := $(BIN):$(PATH)
# ansible.cfg runs Mitogen's strategy; STRATEGY=linear is Ansible's own (docs/benchmarks.md, Deploy speed)
ifneq ($(STRATEGY),)
export ANSIBLE_STRATEGY := $(STRATEGY)
endif
# the demo vault of `local` has a committed password file; other environments bring their own
VAULT_PASSWORD_FILE ?= $(firstword $(wildcard $(INVENTORY)/vault-password.txt $(INVENTORY)/.vault-password))
# no vault yet (a fresh staging copy): no prompt, so the pre-flight can say what is missing
VAULT_ARGS  = $(if $(VAULT_PASSWORD_FILE),--vault-password-file $(VAULT_PASSWORD_FILE),$(if $(wildcard $(INVENTORY)/group_vars/all/vault.yml),--ask-vault-pass,))
PLAYBOOK    = $(BIN)/ansible-playbook -i $(INVENTORY) $(VAULT_ARGS)
STAGE       := $(REPO)/scripts/stage
SPACE       := $(empty) $(empty)

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  ENV is one of: $(ENVS)"

# ---------------------------------------------------------------------------- toolchain
# missing Debian packages of $(1) are installed, then $@ is touched
define apt_install
	@mkdir -p $(STATE)
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi
	@touch $@
endef

.PHONY: toolchain
toolchain: $(STATE)/apt.stamp $(VENV)/.stamp ## install Debian packages and the pinned venv (a second run installs nothing)

$(STATE)/apt.stamp: Makefile
	$(call apt_install,$(APT_PACKAGES))

.PHONY: harness-tools
harness-tools: toolchain $(STATE)/apt-harness.stamp ## the test-host harness's Debian packages (ENV=local, Molecule)

$(STATE)/apt-harness.stamp: Makefile
	$(call apt_install,$(HARNESS_APT_PACKAGES))

$(VENV)/.stamp: requirements/toolchain.txt
	@test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r requirements/toolchain.txt
	@touch $@

.PHONY: lock
lock: ## re-resolve the pinned locks in requirements/ (toolchain, scanners; needs PyPI and npm)
	@test -x $(STATE)/uv/bin/uv || { python3 -m venv $(STATE)/uv && $(STATE)/uv/bin/pip install -q uv==0.9.7; }
	$(STATE)/uv/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes --no-header \
	  requirements/toolchain.in -o requirements/toolchain.txt
	$(STATE)/uv/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes --no-header \
	  requirements/scan.in -o requirements/scan.txt
	cd requirements/observatory && npm install --package-lock-only --ignore-scripts --omit-lockfile-registry-resolved

# ---------------------------------------------------------------------------- environments
define require_env
	@if [ -z "$(ENV)" ]; then echo "usage: make $@ ENV=<$(subst $(SPACE),|,$(ENVS))>" >&2; exit 2; fi
	@if [ ! -f "$(INVENTORY)/hosts.yml" ]; then echo "make $@: unknown ENV '$(ENV)'; use one of: $(ENVS)" >&2; exit 2; fi
endef

define require_local
	@if [ "$(ENV)" != local ]; then echo "make $@: only ENV=local has harness hosts; '$(ENV)' is managed by its operator" >&2; exit 2; fi
endef

.PHONY: up
up: harness-tools ## boot the local test hosts listed in inventories/local/hosts.yml (ENV=local)
	$(call require_env)
	$(call require_local)
	@$(BIN)/python -m testhosts is-up --env $(ENV) --inventory $(INVENTORY) 2>/dev/null \
	  || $(BIN)/python -m testhosts create --env $(ENV) --inventory $(INVENTORY)

.PHONY: down
down: harness-tools ## stop and remove the local test hosts (ENV=local)
	$(call require_env)
	$(call require_local)
	$(BIN)/python -m testhosts destroy --env $(ENV)

.PHONY: deploy
deploy: toolchain ## converge ENV's hosts with ansible/site.yml (ENV=local boots its hosts first)
	$(call require_env)
	@if [ "$(ENV)" = local ]; then $(MAKE) up ENV=local; fi
	@start=$$(date +%s); \
	$(PLAYBOOK) $(REPO)/ansible/site.yml $(ARGS); \
	echo "deploy ENV=$(ENV) finished in $$(( $$(date +%s) - start ))s"

.PHONY: check
check: toolchain ## dry run with diff (--check --diff) of ansible/site.yml against ENV
	$(call require_env)
	$(PLAYBOOK) --check --diff $(REPO)/ansible/site.yml $(ARGS)

.PHONY: backup
backup: toolchain ## back up ENV's app database now (prints the file to restore)
	$(call require_env)
	$(PLAYBOOK) $(REPO)/ansible/backup.yml $(ARGS)

.PHONY: restore
restore: toolchain ## point-in-time restore: TARGET_TIME='YYYY-MM-DD HH:MM:SS+00' or TARGET=latest; BACKUP=<file>: an export
	$(call require_env)
	@if [ -n "$(BACKUP)" ] && [ -z "$(TARGET_TIME)$(TARGET)" ]; then \
	  $(PLAYBOOK) $(REPO)/ansible/restore-dump.yml -e backup=$(BACKUP) $(ARGS); \
	elif [ -n "$(TARGET_TIME)" ] && [ -z "$(BACKUP)$(TARGET)" ]; then \
	  $(PLAYBOOK) $(REPO)/ansible/restore.yml -e '{"restore_target": "$(TARGET_TIME)"}' $(ARGS); \
	elif [ "$(TARGET)" = latest ] && [ -z "$(BACKUP)$(TARGET_TIME)" ]; then \
	  $(PLAYBOOK) $(REPO)/ansible/restore.yml -e restore_target=latest $(ARGS); \
	else \
	  echo "usage: make restore ENV=$(ENV) TARGET_TIME='YYYY-MM-DD HH:MM:SS+00' | TARGET=latest   (point in time, pgBackRest)" >&2; \
	  echo "       make restore ENV=$(ENV) BACKUP=<file>   (an export of make backup; make backup prints the names)" >&2; \
	  exit 2; \
	fi

.PHONY: rollback
rollback: toolchain ## go back one release on ENV's app hosts (refuses when there is none)
	$(call require_env)
	$(PLAYBOOK) $(REPO)/ansible/rollback.yml $(ARGS)

.PHONY: pg-restart
pg-restart: toolchain ## restart PostgreSQL on ENV's db host with PgBouncer paused (no failed request)
	$(call require_env)
	$(PLAYBOOK) $(REPO)/ansible/pg-restart.yml $(ARGS)

.PHONY: db-status
db-status: toolchain ## the Patroni cluster of ENV: leader, replicas, lag (3+ db hosts)
	$(call require_env)
	$(PLAYBOOK) $(REPO)/ansible/db-status.yml $(ARGS)

.PHONY: db-switchover
db-switchover: toolchain ## planned change of the Patroni leader, PgBouncer paused (CANDIDATE=<db host> optional)
	$(call require_env)
	$(PLAYBOOK) $(REPO)/ansible/db-switchover.yml $(if $(CANDIDATE),-e db_switchover_to=$(CANDIDATE)) $(ARGS)

.PHONY: bench
bench: toolchain ## benchmark the deployed ENV against a naive baseline (ENV=local; writes bench/results/latest.*)
	$(call require_env)
	@if [ "$(ENV)" != local ]; then echo "make bench: only ENV=local for now (it loads demo data and opens a baseline port); '$(ENV)' is refused" >&2; exit 2; fi
	@for t in wrk hey; do command -v $$t >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk hey >/dev/null; break; }; done
	@test -f $(STATE)/venv-bench/.stamp -a $(STATE)/venv-bench/.stamp -nt bench/requirements.txt || { \
	  test -x $(STATE)/venv-bench/bin/python || python3 -m venv $(STATE)/venv-bench; \
	  $(STATE)/venv-bench/bin/pip install -q --disable-pip-version-check --require-hashes -r bench/requirements.txt && touch $(STATE)/venv-bench/.stamp; }
	$(PLAYBOOK) $(REPO)/ansible/bench.yml $(ARGS)
	@rc=0; $(BIN)/python bench/run.py --env $(ENV) --out bench/results $(BENCH_ARGS) || rc=$$?; \
	$(STATE)/venv-bench/bin/python bench/chart.py bench/results/latest.json bench/results/latest.png; \
	echo "make bench: bench/results/latest.{md,json,png} written"; exit $$rc

.PHONY: bench-tuning
bench-tuning: toolchain ## each tuning choice against its alternatives on ENV=local (about 25 min; writes bench/results/tuning.*)
	$(call require_env)
	@if [ "$(ENV)" != local ]; then echo "make bench-tuning: only ENV=local (it switches the stack's tuning back and forth); '$(ENV)' is refused" >&2; exit 2; fi
	@command -v wrk >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; }
	$(PLAYBOOK) $(REPO)/ansible/bench.yml $(ARGS)
	@rc=0; $(BIN)/python bench/tuning.py --env $(ENV) --out bench/results $(BENCH_ARGS) || rc=$$?; \
	$(PLAYBOOK) $(REPO)/ansible/bench.yml $(ARGS) >/dev/null || rc=$$?; \
	echo "make bench-tuning: bench/results/tuning.{md,json} written; the baseline follows the current release again"; exit $$rc

# ---------------------------------------------------------------------------- tests
.PHONY: lint
lint: toolchain ## yamllint, ansible-lint (production profile), ruff, role specs vs defaults and variable tables
	@$(STAGE) yamllint $(BIN)/yamllint -s .
	@$(STAGE) ansible-lint $(BIN)/ansible-lint -q
	@$(STAGE) ruff $(BIN)/ruff check harness molecule scripts/role-docs app bench ansible/plugins
	@$(STAGE) role-specs $(BIN)/python scripts/role-docs --check

.PHONY: docs
docs: toolchain ## regenerate the variable tables (docs/variables.md, roles' READMEs) from the argument specs
	$(BIN)/python scripts/role-docs --write

.PHONY: test-harness
test-harness: harness-tools ## the harness's own tests (unit, then real hosts: boot, reboot, leftovers, destroy)
	@$(STAGE) harness-tests $(BIN)/pytest -q -p no:cacheprovider harness/tests

.PHONY: test-app
test-app: ## the Django app's tests against a real PostgreSQL and Redis
	@if [ -x app/bin/test ]; then $(STAGE) app-tests app/bin/test; else echo "app/bin/test missing" >&2; exit 1; fi

.PHONY: test-fast
test-fast: lint test-app ## lint, the harness's unit tests and the app's tests (between commits)
	@$(STAGE) harness-unit $(BIN)/pytest -q -p no:cacheprovider -m "not hosts" harness/tests

.PHONY: scan-tools
scan-tools: ## the scanners the tests run against the site (sslyze, MDN HTTP Observatory), pinned
	@$(REPO)/scripts/scan-tools

.PHONY: molecule
molecule: harness-tools scan-tools ## every Molecule scenario: create, converge, idempotence, verify, destroy
	@for s in $(SCENARIOS); do $(STAGE) "molecule-$$s" $(BIN)/molecule test -s $$s || exit 1; done

.PHONY: test
test: ## everything: lint, harness, app, every Molecule scenario; prints each stage's time
	@: > $(STATE)/stages.txt 2>/dev/null || { mkdir -p $(STATE); : > $(STATE)/stages.txt; }
	@start=$$(date +%s); \
	if $(MAKE) toolchain && $(MAKE) lint && $(MAKE) test-harness && $(MAKE) test-app && $(MAKE) molecule; \
	then rc=0; else rc=$$?; fi; \
	echo "== stage times"; cat $(STATE)/stages.txt; \
	echo "== make test: $$( [ $$rc = 0 ] && echo passed || echo FAILED ) in $$(( $$(date +%s) - start ))s"; exit $$rc

.PHONY: boot-stress
boot-stress: harness-tools ## boot 3 hosts 20 times over and report every failed unit (not in make test)
	$(BIN)/python -m testhosts stress --hosts $${HOSTS:-3} --rounds $${ROUNDS:-20} --distro $${DISTRO:-trixie}

.PHONY: clean
clean: ## remove every test host of this checkout and the venvs (base images stay cached)
	@for e in $$(ls $(STATE)/testhosts/envs 2>/dev/null); do $(BIN)/python -m testhosts destroy --env $$e; done
	rm -rf $(STATE)

# The two entry points of the README: `make demo` (the main job) and `make test`.
# Both install what is missing first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export CONTAINERS_CONF := $(CURDIR)/orchestrator/src/patchwave/lab/data/containers.conf
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
# ssh control sockets inside the checkout too (ansible.cfg keeps Ansible's home there)
export ANSIBLE_SSH_CONTROL_PATH_DIR := $(CURDIR)/.patchwave/ansible/cp

.PHONY: setup demo test lint unit integration sanity molecule lab-down clean

setup:
	@scripts/setup.sh

demo: setup
	patchwave demo

test: setup
	scripts/test.sh

lint: setup
	scripts/test.sh lint

lab-down: setup
	patchwave lab down

clean: lab-down
	rm -rf .venv output

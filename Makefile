# Lamplighter — the two commands that matter: `make run` and `make test`.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
APT_PKGS  := qemu-system-arm firmware-microbit-micropython
export LAMPLIGHTER_DATA_DIR ?= $(CURDIR)/var
# HIL boards: every backend; the absent ones (Espressif's QEMU, a real board) skip with the reason
export LAMPLIGHTER_HIL_BOARDS ?= all

.PHONY: help install system-deps services run test test-fast hil bench lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its pinned dependencies (and package-lock.json's npm packages)
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: bench node_day skips its 32-bit rows"; \
	elif ! npm ci --no-audit --no-fund --loglevel=error; then echo "npm ci failed: bench node_day skips its 32-bit rows"; fi

system-deps:  ## install the Debian packages the HIL tests need (QEMU, micro:bit MicroPython)
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

services:  ## make sure the local PostgreSQL the tests use is running (starts it if not)
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start; \
	  for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

run: install  ## start the fleet server on 127.0.0.1:8000 (SQLite under ./var) with emulated lampposts
	$(BIN)/lamplighter demo

test: install system-deps services lint  ## run the whole suite (unit, API on SQLite and PostgreSQL, firmware on MicroPython, HIL): the quick cases and then the slow ones two files at a time, then the real-time HIL scenarios one by one
	@status=0; \
	$(BIN)/pytest -q -rs -p no:cacheprovider -m "not slow" -n 2 --dist loadfile || status=$$?; \
	$(BIN)/pytest -q -rs -p no:cacheprovider -m slow -n 2 --dist loadfile --durations=8 tests || status=$$?; \
	$(BIN)/pytest -q -rs -p no:cacheprovider -m slow --durations=8 hil_tests || status=$$?; \
	exit $$status

test-fast: install services lint  ## the suite without the cases marked slow, three test files at a time
	$(BIN)/pytest -q -rs -p no:cacheprovider -m "not slow" -n 3 --dist loadfile

hil: install system-deps services  ## the hardware-in-the-loop suite alone
	$(BIN)/pytest -q -rs -p no:cacheprovider hil_tests

bench: install services  ## run every benchmark and compare against its baseline
	$(BIN)/python -m bench

lint: install  ## ruff over the host code and the firmware (firmware/ruff.toml: pyflakes and pycodestyle)
	$(BIN)/ruff check fleet ota tools tests hil_tests bench
	$(BIN)/ruff check firmware
	$(BIN)/python tests/firmware/esp32_typecheck.py

clean:  ## remove the virtualenv and local data
	rm -rf $(VENV) var

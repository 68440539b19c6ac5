# ndpatch: `make demo` and `make test` set everything up themselves (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
READY := $(VENV)/.ready
export DEBIAN_FRONTEND := noninteractive

.PHONY: setup demo test bench clean

setup: $(READY)

# System GDAL (library, headers, command-line tools) from Debian.
/usr/bin/gdal-config /usr/bin/gdal_translate:
	apt-get update -qq
	apt-get install -y -qq libgdal-dev gdal-bin

# The order matters: wheel before building GDAL (bdist_wheel), numpy before GDAL
# (else gdal_array is silently left out), torch==2.13.0 before anything that
# depends on torch (else pip fetches a CUDA build).
$(READY): requirements.txt pyproject.toml setup.py Makefile | /usr/bin/gdal-config /usr/bin/gdal_translate
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip setuptools wheel
	$(PIP) install "$$(grep '^numpy==' requirements.txt)"
	$(PIP) install torch==2.13.0
	$(PY) -c "import osgeo.gdal_array" 2>/dev/null || \
	    $(PIP) install --no-build-isolation "GDAL==$$(gdal-config --version)"
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps --no-build-isolation -e .   # metadata: pyproject.toml
	$(PY) -c "import osgeo.gdal_array, torch, kwcoco, kwimage, ndpatch"
	touch $@

demo: setup
	$(PY) -m ndpatch demo --out demo_output --backend npy --workdir demo_output/cache

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

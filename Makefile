# Developer entry points for jax_lazy.
#
#   make test       fast test suite (everything not marked `slow`)
#   make test-slow  only the tests marked `slow`
#   make demo       run `python -m jax_lazy.demo`
#   make bench      run bench/run.py (if present)
#   make install    (re)install into $(VENV) if needed; `make clean`, `make distclean`
#
# How installing works: $(VENV) gets an *editable* install (scikit-build-core,
# redirect mode). Python files are served straight from the source tree, so
# edits need no reinstall; the compiled module jax_lazy/_native.<ext> lives in
# site-packages and is rebuilt by re-running the install, which these rules do
# only when pyproject.toml, CMakeLists.txt, xla_ffi/* or the *set* of Python
# files changed: the editable finder maps the modules that existed at install
# time, so e.g. a new __init__.py in a formerly __init__-less directory, or a
# deleted module, is only seen after a reinstall.
#
# The build runs WITHOUT build isolation: the build requirements and jax are
# first installed into $(VENV), so CMake can find jaxlib's XLA FFI headers
# (required here: JAX_LAZY_REQUIRE_XLA_FFI=ON) and the persistent build dir
# $(BUILD_DIR) stays valid between installs. A plain `pip install .` (isolated)
# also works but builds without the FFI headers.

PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?= --quiet --disable-pip-version-check
PYTEST_ARGS ?=
# CMake build dir of the editable install, kept for incremental rebuilds
# ({wheel_tag} is expanded by scikit-build-core).
BUILD_DIR ?= build/editable-{wheel_tag}

VENV_PY := $(VENV)/bin/python
PIP := $(VENV_PY) -m pip
STAMP_DIR := $(VENV)/.jax_lazy-stamps
comma := ,

# Inputs of the compiled module / package metadata.
NATIVE_INPUTS := pyproject.toml CMakeLists.txt $(wildcard xla_ffi/*.cc xla_ffi/*.h) \
	$(wildcard jax_lazy/backends/kernels/cuda_abi.h)

# List of the package's Python files; the file is rewritten only when the list
# changes, so adding/removing/renaming a module triggers a reinstall but editing
# one does not.
PY_MANIFEST := build/py-files.txt
_ := $(shell mkdir -p build && \
	find jax_lazy -name '*.py' 2>/dev/null | LC_ALL=C sort > $(PY_MANIFEST).tmp && \
	{ cmp -s $(PY_MANIFEST).tmp $(PY_MANIFEST) || mv -f $(PY_MANIFEST).tmp $(PY_MANIFEST); }; \
	rm -f $(PY_MANIFEST).tmp)

# install-package EXTRAS: editable install of `.[EXTRAS]` into $(VENV).
define install-package
	$(PIP) install $(PIP_FLAGS) scikit-build-core
	$(PIP) install $(PIP_FLAGS) jax jaxlib \
	  $$($(VENV_PY) -m scikit_build_core.build requires --mode editable \
	     | $(VENV_PY) -c 'import json, sys; print(" ".join(json.load(sys.stdin)))')
	$(PIP) install $(PIP_FLAGS) --no-build-isolation \
	  --config-settings=build-dir=$(BUILD_DIR) \
	  --config-settings=cmake.define.JAX_LAZY_REQUIRE_XLA_FFI=ON \
	  --editable '.[$(1)]'
endef

.PHONY: all install demo test test-slow bench clean distclean

all: test

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP_DIR)/test: $(VENV_PY) $(NATIVE_INPUTS) $(PY_MANIFEST)
	$(call install-package,test$(comma)demo)
	@mkdir -p $(STAMP_DIR) && touch $@ $(STAMP_DIR)/demo  # [test,demo] covers [demo]

$(STAMP_DIR)/demo: $(VENV_PY) $(NATIVE_INPUTS) $(PY_MANIFEST)
	$(call install-package,demo)
	@mkdir -p $(STAMP_DIR) && touch $@

install: $(STAMP_DIR)/test

demo: $(STAMP_DIR)/demo
	$(VENV_PY) -m jax_lazy.demo

test: $(STAMP_DIR)/test
	$(VENV_PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

# pytest exits with 5 when no test is selected: not an error here.
test-slow: $(STAMP_DIR)/test
	$(VENV_PY) -m pytest -m slow -q $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] && echo "no slow tests"; [ $$rc -eq 5 ]; }

bench: $(STAMP_DIR)/test
	@if [ -f bench/run.py ]; then $(VENV_PY) bench/run.py; else echo "bench/run.py does not exist yet"; fi

# Keeps $(VENV) (and the editable install in it, which stays usable).
clean:
	rm -rf build dist _skbuild wheelhouse .pytest_cache .hypothesis *.egg-info
	find . \( -path ./$(VENV) -o -path ./.git \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	find jax_lazy -name '_native*.so' -delete 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)

# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-avx2 quick-demo bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/protoscope demo

quick-demo: $(STAMP)
	$(BIN)/protoscope demo --quick

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
# Installed when missing and possible (root, a reachable Debian mirror); otherwise those tests skip.
$(VENV)/.chromium: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1) \
	  || echo "note: could not install chromium (apt-get install chromium); the browser tests will skip"
	@if command -v chromium >/dev/null 2>&1; then touch $@; fi

test: $(STAMP) $(VENV)/.chromium
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

# The suite as a CPU without AVX-512 runs it (oneDNN's AVX2 kernels, float32 training), on any x86 host.
test-avx2: $(STAMP) $(VENV)/.chromium
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python -m pytest -n 2 --dist loadgroup -q

clean:
	rm -rf out .pytest_cache

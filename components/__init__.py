"""KFP components: one folder per stage, each a thin wrapper over one visioncompress call."""

from visioncompress.settings import load_settings

_SETTINGS = load_settings()
CPU_IMAGE = _SETTINGS.image_cpu
GPU_IMAGE = _SETTINGS.image_gpu

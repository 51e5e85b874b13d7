"""Typed stage configurations: the spec's parameters and defaults, validated once at the edge."""

from visioncompress.config._fields import config_from, from_spec, spec_names, to_spec
from visioncompress.config.validate import validate_params
from visioncompress.config.benchmark import BenchmarkConfig
from visioncompress.config.data import DataConfig
from visioncompress.config.detection import DetectionPostConfig, GroupFisherConfig
from visioncompress.config.distill import DistillConfig
from visioncompress.config.prune import PruneConfig
from visioncompress.config.publish import PublishConfig
from visioncompress.config.qat import OpenVinoQATConfig, TensorRTQATConfig, TorchQATConfig
from visioncompress.config.quantize import LadderConfig, OnnxPTQConfig, OpenVinoPTQConfig, TorchPTQConfig
from visioncompress.config.tensorrt import TensorRTConfig
from visioncompress.config.runtime import RuntimeConfig, StorageConfig
from visioncompress.config.train import ModelConfig, TrainConfig

__all__ = [
    "BenchmarkConfig", "DataConfig", "DetectionPostConfig", "DistillConfig", "GroupFisherConfig", "LadderConfig", "ModelConfig", "OnnxPTQConfig", "OpenVinoPTQConfig",
    "OpenVinoQATConfig", "PruneConfig", "PublishConfig", "RuntimeConfig", "StorageConfig", "TensorRTConfig", "TensorRTQATConfig", "TorchPTQConfig", "TorchQATConfig", "TrainConfig", "config_from", "from_spec", "spec_names", "to_spec", "validate_params",
]

"""Model zoo and model-artifact input/output."""

from visioncompress.models.io import (
    load_torch_module, load_user_checkpoint, model_file, save_torch_model, save_torchscript,
)
from visioncompress.models.zoo import build_classifier, classification_model_names

__all__ = [
    "build_classifier", "classification_model_names", "load_torch_module", "load_user_checkpoint",
    "model_file", "save_torch_model", "save_torchscript",
]

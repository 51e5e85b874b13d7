"""visioncompress: compress computer-vision models (the library behind the KFP components).

Every stage is one public function taking paths and a typed config; nothing here imports KFP.
"""

from visioncompress.errors import ArtifactError, ConfigError, VisionCompressError

__version__ = "0.1.0"

__all__ = ["ArtifactError", "ConfigError", "VisionCompressError", "__version__"]

"""rekd_core: interpretable select-predict classifiers (rationale extraction) and their
distillation from a teacher (REKD), for text and images."""
from .checkpoint import load_checkpoint, read_config, read_metrics, save_checkpoint
from .config import TrainConfig
from .errors import CheckpointError, ConfigError, DataError, RekdError
from .explain import Explanation, compare, explain
from .model import RationaleModel
from .model_config import BackboneConfig, ModelConfig
from .presets import get_preset, list_presets
from .training import train

__all__ = ["BackboneConfig", "CheckpointError", "ConfigError", "DataError", "Explanation", "ModelConfig",
           "RationaleModel", "RekdError", "TrainConfig", "compare", "explain", "get_preset", "list_presets",
           "load_checkpoint", "read_config", "read_metrics", "save_checkpoint", "train"]
__version__ = "0.1.0"

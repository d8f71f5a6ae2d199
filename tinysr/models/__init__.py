"""Model zoo. Importing this package registers every architecture."""
from . import esrgan, srgan, tpsr  # noqa: F401  (registration)
from .registry import ModelEntry, create_model, get_entry, list_models, register_model
from .tpsr import CellSR

__all__ = ["CellSR", "ModelEntry", "create_model", "get_entry", "list_models", "register_model"]

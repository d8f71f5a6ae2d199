"""Model zoo. Importing this package registers every architecture."""
from . import esrgan, srgan, tpsr  # noqa: F401  (registration)
from .registry import (ModelEntry, build_family, create_model, get_entry, list_families, list_models, register_family,
                       register_model)
from .tpsr import CellSR

__all__ = ["CellSR", "ModelEntry", "build_family", "create_model", "get_entry", "list_families", "list_models",
           "register_family", "register_model"]

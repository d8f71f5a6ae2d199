"""Model zoo. Importing this package registers every architecture."""
from . import discriminators, esrgan, mobile, srgan, tpsr, trilevel  # noqa: F401  (registration)
from .discriminators import DiscriminatorGenotype, SearchedDiscriminator, VGGStyleDiscriminator
from .registry import (KINDS, ModelEntry, build_family, create_model, get_entry, kind_of, list_families, list_models,
                       register_family, register_model)
from .tpsr import CellSR

__all__ = ["KINDS", "CellSR", "DiscriminatorGenotype", "ModelEntry", "SearchedDiscriminator", "VGGStyleDiscriminator",
           "build_family", "create_model", "get_entry", "kind_of", "list_families", "list_models", "register_family",
           "register_model"]

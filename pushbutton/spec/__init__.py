"""The model standard: ``model.yaml`` schema, loading with precise errors, directory checks, discovery."""

from __future__ import annotations

from pushbutton.spec.checks import check_model_dir, load_model_dir
from pushbutton.spec.discovery import Discovered, declared_name, discover, find_spec_dirs
from pushbutton.spec.loader import SPEC_FILE, load_spec
from pushbutton.spec.model import API_VERSION, ModelSpec

__all__ = [
    "API_VERSION",
    "SPEC_FILE",
    "Discovered",
    "ModelSpec",
    "check_model_dir",
    "declared_name",
    "discover",
    "find_spec_dirs",
    "load_model_dir",
    "load_spec",
]

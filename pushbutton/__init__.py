"""pushbutton: the framework-free core of the model lifecycle service.

Spec validation, registry access, serving, stores and the CLI live here; the Airflow-facing
folders (``dags/``, ``operators/``, ``plugins/``) are thin adapters over this package.
"""

from __future__ import annotations

__version__ = "0.1.0"

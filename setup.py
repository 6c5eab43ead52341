"""Only the package list, which pyproject.toml cannot express: the discovered code packages plus ``schemas/``.

``schemas/`` stays at the top of the repository (reviewed files, the evolution gate reads it from git) and ships
inside the wheel as ``onceonly/schemas`` (where ``onceonly.catalog.schema_dir`` looks when installed). A
``packages.find`` section cannot add a package that lives outside its search folders, so the list is made here.
"""

from setuptools import find_namespace_packages, setup

SCHEMAS = ["onceonly.schemas", *(f"onceonly.schemas.{p}" for p in find_namespace_packages(where="schemas"))]

setup(packages=[*find_namespace_packages(include=["onceonly*", "services*", "connectors*"]), *SCHEMAS])

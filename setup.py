"""Build shim: the metadata is in pyproject.toml.

It adds what PEP 621 cannot compute: the extras from ``[tool.ndpatch.extras]``
plus ``all``, their union, so adding an extra is one line in pyproject.toml.
"""
import tomllib
from pathlib import Path

from setuptools import setup

PYPROJECT = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())
EXTRAS = PYPROJECT["tool"]["ndpatch"]["extras"]

setup(extras_require={**EXTRAS, "all": sorted({req for reqs in EXTRAS.values() for req in reqs})})

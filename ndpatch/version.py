"""ndpatch's version (its own module, so that code below the package's ``__init__`` can read it)."""
__version__ = "0.1.0"

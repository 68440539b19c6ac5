"""Pixel backends: direct GDAL reads (``None``) and lazily converted caches.

Example:
    >>> make_backend(None).name
    'direct'
"""
from __future__ import annotations

from typing import Any

from ndpatch.cache.base import Backend, CacheEntry, ImageSource, read_window
from ndpatch.cache.direct import DirectBackend
from ndpatch.errors import NdpatchError


def make_backend(backend: Any = None, workdir: str | None = None, **options) -> Backend:
    """A backend from a name (``None``/``'direct'``) or an instance (returned as is)."""
    if backend is None or backend == "direct":
        if options:
            raise NdpatchError(f"the direct backend takes no options, got {sorted(options)}")
        return DirectBackend()
    if isinstance(backend, str):
        raise NdpatchError(f"unknown backend {backend!r}; expected None or 'direct'")
    return backend


__all__ = ["Backend", "CacheEntry", "ImageSource", "DirectBackend", "make_backend", "read_window"]

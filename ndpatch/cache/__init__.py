"""Pixel backends: direct GDAL reads (``None``) and lazily converted caches (npy, COG, auto).

Example:
    >>> make_backend(None).name
    'direct'
    >>> import tempfile
    >>> make_backend("cog", workdir=tempfile.mkdtemp(), blocksize=512).settings["blocksize"]
    512
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ndpatch.cache.base import Backend, CacheEntry, ImageSource, read_window
from ndpatch.cache.casting import cast_into
from ndpatch.cache.cog import AutoBackend, CogBackend, validate_cog
from ndpatch.cache.direct import DirectBackend
from ndpatch.cache.npy import NpyBackend, validate_npy
from ndpatch.cache.store import CacheStore, cache_root
from ndpatch.cache.validity import read_valid_mask, valid_fraction
from ndpatch.errors import CorruptCacheError, NdpatchError

#: Cache backends by name; each takes ``workdir`` and its own keyword settings.
CACHE_BACKENDS = {"npy": NpyBackend, "cog": CogBackend, "auto": AutoBackend}


def make_backend(backend: Any = None, workdir: str | None = None, **options) -> Backend:
    """A backend from a name (``None``/``'direct'``, ``'npy'``, ``'cog'``, ``'auto'``) or an instance.

    The cache directory is ``workdir``, else ``$NDPATCH_CACHE``, else the per-user cache dir.
    Every backend takes ``allow_vrt`` (read GDAL VRTs whose files are all inside the
    dataset's folder; off by default).
    """
    if backend is None or backend == "direct":
        allow_vrt = options.pop("allow_vrt", False)
        if options:
            raise NdpatchError(f"the direct backend takes only allow_vrt, got {sorted(options)}")
        return DirectBackend(allow_vrt)
    if isinstance(backend, str):
        if backend not in CACHE_BACKENDS:
            raise NdpatchError(f"unknown backend {backend!r}; expected None, 'direct', "
                               f"{', '.join(repr(name) for name in CACHE_BACKENDS)}")
        try:
            return CACHE_BACKENDS[backend](workdir, **options)
        except TypeError as err:
            raise NdpatchError(f"bad options for backend {backend!r}: {err}") from None
    return backend


def validate_entry(path: Path | None, sidecar: dict) -> None:
    """Check a cache entry of any kind against its sidecar: sizes, headers (what ``ndpatch cache verify`` runs)."""
    validators = {"npy": validate_npy, "cog": validate_cog}
    if sidecar.get("kind") not in validators:
        raise CorruptCacheError(f"unknown cache entry kind {sidecar.get('kind')!r}")
    validators[sidecar["kind"]](path, sidecar)


__all__ = ["Backend", "CacheEntry", "ImageSource", "DirectBackend", "NpyBackend", "CogBackend",
           "AutoBackend", "CacheStore", "cache_root", "make_backend", "read_window", "validate_entry",
           "cast_into", "read_valid_mask", "valid_fraction"]

"""ndsampler's ``abstract_sampler`` module: the sampler API as an abstract class, and ``HashIdentifiable``.

:class:`ndpatch.CocoSampler` is registered as an :class:`AbstractSampler`.

Example:
    >>> import ndpatch
    >>> isinstance(ndpatch.CocoSampler.demo("shapes8"), AbstractSampler)
    True
"""
from __future__ import annotations

import abc

from ndpatch.sampler import CocoSampler


class AbstractSampler(abc.ABC):  # noqa: B024 (ndsampler's API: every method is optional)
    """What a sampler may implement: class lookups, windows, positives / negatives, whole images, preselect."""

    @property
    def class_ids(self):
        raise NotImplementedError

    def lookup_class_name(self, class_id):
        raise NotImplementedError

    def lookup_class_id(self, class_name):
        raise NotImplementedError

    def load_sample(self, tr, pad=None, window_dims=None, visible_thresh=0.1):
        raise NotImplementedError

    @property
    def n_positives(self):
        raise NotImplementedError

    def load_item(self, index, pad=None, window_dims=None):
        raise NotImplementedError

    def load_positive(self, index=None, pad=None, window_dims=None, rng=None):
        raise NotImplementedError

    def load_negative(self, index=None, pad=None, window_dims=None, rng=None):
        raise NotImplementedError

    def load_image(self, image_id):
        raise NotImplementedError

    def image_ids(self):
        raise NotImplementedError

    def preselect(self, **kwargs):
        """Set up a pool of training examples before an epoch."""
        raise NotImplementedError


AbstractSampler.register(CocoSampler)


class HashIdentifiable:
    """A class whose ``hashid`` is the hash of ``_depends()`` (or what ``_make_hashid`` returns).

    >>> class Thing(HashIdentifiable):
    ...     def _depends(self):
    ...         return ["a", 1]
    >>> Thing().hashid == Thing().hashid
    True
    """

    def _depends(self):
        raise NotImplementedError

    def _make_hashid(self):
        import ubelt as ub
        parts = self._depends()
        return ub.hash_data(parts), parts

    @property
    def hashid(self) -> str:
        if getattr(self, "_hashid", None) is None:
            self._hashid = self._make_hashid()[0]
        return self._hashid

"""The process's reader pool: share() runs every item exactly once, on the caller and helpers, and raises errors."""
import threading
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndpatch.readers import ReaderPool

#: A pool of these tests' own (the process's READERS is left as other tests expect it).
POOL = ReaderPool(max_threads=4)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 60), threads=st.integers(1, 6))
def test_share_works_each_item_exactly_once(n, threads):
    seen, lock = Counter(), threading.Lock()

    def work(item):
        with lock:
            seen[item] += 1

    POOL.share(work, list(range(n)), threads)
    assert seen == Counter(range(n))


def test_share_does_not_wait_for_helpers_that_start_late():
    """With every pool thread held up, the caller does all the items itself and returns."""
    release = threading.Event()
    blockers = [POOL.executor().submit(release.wait) for _ in range(POOL.max_threads)]
    try:
        threads_seen = set()
        POOL.share(lambda item: threads_seen.add(threading.get_ident()), list(range(50)), threads=4)
        assert threads_seen == {threading.get_ident()}
    finally:
        release.set()
        for blocker in blockers:
            blocker.result()


def test_share_raises_the_first_error_after_the_items_in_progress():
    started, finished = [], []

    def work(item):
        started.append(item)
        if item == 3:
            raise ValueError("item 3 is bad")
        time.sleep(0.001)
        finished.append(item)

    with pytest.raises(ValueError, match="item 3 is bad"):
        POOL.share(work, list(range(40)), threads=3)
    assert len(started) < 40                          # the handing out stopped
    assert sorted(finished) == sorted(set(started) - {3})  # what had started ran to its end

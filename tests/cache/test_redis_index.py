"""The Redis store's index settings: the partition filter inside the KNN clause under each
hybrid policy, on a real Redis."""

from __future__ import annotations

import numpy as np
import pytest

from tokenlean_cache import Entry, RedisStore
from tokenlean_core import TokenleanError


@pytest.mark.parametrize(
    ("algorithm", "policy"), [("hnsw", "BATCHES"), ("hnsw", "ADHOC_BF"), ("flat", None)]
)
def test_small_partition_inside_a_large_one(redis_url: str, algorithm: str, policy: str) -> None:
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(400, 32)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = RedisStore(
        redis_url,
        namespace=f"pol{algorithm}{policy}",
        max_entries=None,
        algorithm=algorithm,
        hybrid_policy=policy,
    )
    store.clear()
    try:
        for i, v in enumerate(vecs[:397]):
            store.put(Entry(f"b{i}", "big", "t", f"q{i}", "a", v))
        for i, v in enumerate(vecs[397:]):
            store.put(Entry(f"s{i}", "small", "t", f"s{i}", "b", v))
        # a query identical to a big-partition row still only finds small-partition rows
        found = store.search("small", vecs[5], 2.0, 3)
        assert {e.key for e, _ in found} == {"s0", "s1", "s2"}
        assert all(e.partition == "small" for e, _ in found)
        hit = store.search("big", vecs[5], 0.01, 1)
        assert hit and hit[0][0].key == "b5" and hit[0][1] < 1e-5
    finally:
        store.clear()
        store.close()


def test_index_settings_are_validated(redis_url: str) -> None:
    with pytest.raises(TokenleanError, match="algorithm"):
        RedisStore(redis_url, algorithm="ivf")
    with pytest.raises(TokenleanError, match="hybrid_policy"):
        RedisStore(redis_url, hybrid_policy="FAST")

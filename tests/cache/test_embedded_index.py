"""The embedded store's vector index: exact while small, IVF from ``ivf_min`` rows, with the
partition (pre-filter) choosing the index and SQLite read only for hits."""

from __future__ import annotations

import threading
import time

import numpy as np
import numpy.typing as npt
import pytest

from tokenlean_cache import EmbeddedStore, Entry
from tokenlean_core import TokenleanError

DIM = 64


def clustered(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    """Unit vectors around 50 topics: the structure real sentence embeddings have."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(50, DIM))
    v = topics[rng.integers(0, 50, size=n)] + 0.6 * rng.normal(size=(n, DIM))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def near(v: npt.NDArray[np.float32], seed: int, scale: float = 0.15) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    q = v + scale * rng.normal(size=v.shape) / np.sqrt(v.shape[-1])
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    out: npt.NDArray[np.float32] = q.astype(np.float32)
    return out


def entry(i: int, vec: npt.NDArray[np.float32], part: str = "p", tenant: str = "t") -> Entry:
    return Entry(f"k{i}", part, tenant, f"question {i}", f"answer {i}", vec, model="m")


def fill(store: EmbeddedStore, vecs: npt.NDArray[np.float32], part: str = "p") -> None:
    for i, v in enumerate(vecs):
        store.put(entry(i, v, part))


@pytest.mark.parametrize("background", [False, True])
def test_ivf_recall_against_brute_force(background: bool) -> None:
    vecs = clustered(3000)
    store = EmbeddedStore(":memory:", max_entries=None, ivf_min=1024, background_index=background)
    fill(store, vecs)
    assert store.wait_index(timeout=60)
    part = store._parts["p"]
    assert part.centroids is not None  # the IVF index is in use
    assert len(part.lists) > 8
    queries = near(vecs[:400], seed=1)
    found = 0
    for q in queries:
        brute = int(np.argmax(vecs @ q))
        res = store.search("p", q, 0.3, 1)
        found += bool(res) and res[0][0].key == f"k{brute}"
    assert found / len(queries) >= 0.99
    store.close()


def test_ivf_keeps_every_row_through_concurrent_builds() -> None:
    """Rows added, replaced and removed while a background build runs are all accounted for."""
    vecs = clustered(2600, seed=3)
    store = EmbeddedStore(":memory:", max_entries=None, ivf_min=512, background_index=True)
    fill(store, vecs[:2000])
    for i in range(0, 200):  # replace some while builds may be running
        store.put(entry(i, vecs[2000 + i]))
    for i in range(200, 300):
        store.delete(f"k{i}")
    assert store.wait_index(timeout=60)
    part = store._parts["p"]
    assert part.n == store.count() == 1900
    assert sum(b.n for b in part.lists) == 1900
    for key, (li, row) in part.rows.items():
        assert part.lists[li].keys[row] == key
    # a replaced entry is found by its new vector, a deleted one never
    res = store.search("p", vecs[2000 + 5], 0.01, 1)
    assert res and res[0][0].key == "k5"
    assert all(r[0].key != "k250" for r in store.search("p", vecs[250], 0.5, 5))
    store.close()


def test_partition_is_a_prefilter_inside_the_index() -> None:
    """Two partitions with identical vectors: a search only ever returns its own partition's
    rows, whether that partition's index is IVF or exact."""
    vecs = clustered(1500, seed=5)
    store = EmbeddedStore(":memory:", max_entries=None, ivf_min=1024, background_index=False)
    fill(store, vecs, part="big")
    for i, v in enumerate(vecs[:50]):
        store.put(Entry(f"s{i}", "small", "t2", f"q{i}", "x", v))
    assert store._parts["big"].centroids is not None
    assert store._parts["small"].centroids is None
    for v in vecs[:50]:
        assert all(e.partition == "small" for e, _ in store.search("small", v, 2.0, 5))
        assert all(e.partition == "big" for e, _ in store.search("big", v, 2.0, 5))
    assert store.search("other", vecs[0], 2.0, 5) == []
    store.close()


def test_candidates_come_from_memory_and_resolve_on_a_hit(tmp_path: object) -> None:
    store = EmbeddedStore(f"{tmp_path}/c.sqlite3", max_entries=None)
    vecs = clustered(20, seed=7)
    fill(store, vecs)
    (cand, dist), *_ = store.search("p", vecs[3], 0.1, 1)
    assert not cand.complete and cand.payload == "" and cand.question == "question 3"
    assert dist < 1e-5 and np.allclose(cand.vector, vecs[3])
    full = store.resolve(cand)
    assert full is not None and full.complete and full.payload == "answer 3"
    assert full.model == "m"
    store.delete("k3")  # gone between the search and the hit
    assert store.resolve(cand) is None
    store.close()


def test_index_is_rebuilt_from_disk(tmp_path: object) -> None:
    path = f"{tmp_path}/c.sqlite3"
    vecs = clustered(1200, seed=9)
    store = EmbeddedStore(path, max_entries=None, ivf_min=1024, background_index=False)
    fill(store, vecs)
    store.close()
    again = EmbeddedStore(path, max_entries=None, ivf_min=1024, background_index=False)
    assert again._parts["p"].centroids is not None
    res = again.search("p", vecs[77], 0.01, 1)
    assert res and res[0][0].key == "k77"
    again.close()


def test_search_while_building_stays_exact() -> None:
    vecs = clustered(2048, seed=11)
    store = EmbeddedStore(":memory:", max_entries=None, ivf_min=1024, background_index=True)
    stop = threading.Event()
    misses: list[int] = []

    def search_loop() -> None:
        i = 0
        while not stop.is_set():
            j = i % 1000
            if store.count() > 1000:
                res = store.search("p", vecs[j], 0.01, 1)
                if not res or res[0][0].key != f"k{j}":
                    misses.append(j)
            i += 1
            time.sleep(0)

    t = threading.Thread(target=search_loop)
    t.start()
    try:
        fill(store, vecs)
        assert store.wait_index(timeout=60)
    finally:
        stop.set()
        t.join()
    assert misses == []  # an exact duplicate is always found, before, during and after builds
    store.close()


def test_index_settings_are_validated() -> None:
    with pytest.raises(TokenleanError, match="ivf_min"):
        EmbeddedStore(":memory:", ivf_min=10)
    with pytest.raises(TokenleanError, match="nprobe"):
        EmbeddedStore(":memory:", nprobe=0)

"""`app.dashboard.batchids`: the ring of batch-id digests a pod's retries are checked against."""

from __future__ import annotations

from app.dashboard.batchids import BATCH_IDS, BatchIds, digest


def test_batch_ids_are_remembered_newest_first_out_last() -> None:
    ids = BatchIds()
    assert ids.add("a") and not ids.add("a") and "a" in ids and "b" not in ids
    for i in range(BATCH_IDS - 1):
        assert ids.add(f"id-{i}")
    assert len(ids) == BATCH_IDS and "a" in ids
    assert ids.add("one more") and "a" not in ids and "id-0" in ids and len(ids) == BATCH_IDS
    # Digests are compared whole: no match across two of them.
    assert all(f"id-{i}" in ids for i in range(BATCH_IDS - 1)) and "id-x" not in ids


def test_a_digest_is_eight_bytes_the_same_in_every_process() -> None:
    assert digest("shop-1-x-17") == digest("shop-1-x-17") and len(digest("x")) == 8
    assert digest("shop-1-x-17").hex() == "659e9c081005c1da"  # BLAKE2b, not the per-process str hash
    assert "\udc80" not in BatchIds() and BatchIds().add("\udc80")  # any str the JSON decoder gives

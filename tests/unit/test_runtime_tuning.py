"""Worker GC tuning: thresholds raised, start-up objects frozen, and the old values returned."""

from __future__ import annotations

import gc

from runtime.tuning import WORKER_GC_THRESHOLDS, tune_gc


def test_tune_gc_raises_thresholds_and_freezes() -> None:
    before = gc.get_threshold()
    try:
        assert tune_gc() == before
        assert gc.get_threshold() == WORKER_GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)

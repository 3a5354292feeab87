import sys

import pytest

import fastadapt.runtime as runtime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_applies_once(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setattr(runtime, "_done", False)
    assert runtime.keep_freed_memory() is True
    assert runtime.keep_freed_memory() is True  # idempotent


def test_keep_freed_memory_respects_user_setting(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setattr(runtime, "_done", False)
    assert runtime.keep_freed_memory() is False

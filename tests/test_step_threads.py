"""Tests of meanfield.step.threads."""

from __future__ import annotations

import os

import numba

from meanfield.step import set_threads, thread_settings


def test_thread_settings_reports_both_pools_and_the_environment(monkeypatch):
    s = thread_settings()
    assert s["numba_threads"] >= 1
    assert any(p["internal_api"] for p in s["blas"])
    for key in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT"):
        assert s[key] == os.environ.get(key, "")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert thread_settings()["OMP_WAIT_POLICY"] == "PASSIVE"


def test_set_threads_sets_both_pools():
    before = numba.get_num_threads()
    try:
        assert set_threads(1) == 1
        s = thread_settings()
        assert s["numba_threads"] == 1
        assert all(p["num_threads"] == 1 for p in s["blas"])
        assert set_threads(0) == numba.config.NUMBA_NUM_THREADS
    finally:
        set_threads(before)

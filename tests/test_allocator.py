"""reusing_freed_memory: inside it a freed large block is reused without new pages; the setting
is the process's, so nested and concurrent users restore it once, when the last one leaves."""

import platform
import resource
import threading

import numpy as np
import pytest

from deepstyle import allocator

BLOCK = 64 << 20  # above glibc's largest dynamic mmap threshold (32 MiB): mapped afresh by default


def page_faults_of_a_fresh_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(BLOCK // 4, np.float32)  # writes every page
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del block
    return faults


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_freed_block_is_reused_inside_and_given_back_after():
    outside = [page_faults_of_a_fresh_block() for _ in range(2)]
    assert min(outside) > 0  # each block faulted in anew (the count depends on the page size)
    with allocator.reusing_freed_memory():
        page_faults_of_a_fresh_block()  # the heap grows once
        reused = page_faults_of_a_fresh_block()
    assert reused <= min(outside) // 4
    assert page_faults_of_a_fresh_block() > 0  # mapped afresh again afterwards


def test_nested_and_concurrent_users_restore_once(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator._cpu, "keep_freed_memory", calls.append)
    with allocator.reusing_freed_memory():
        with allocator.reusing_freed_memory():
            pass
        assert calls == [True]
        inner_done = threading.Event()

        def other_user():
            with allocator.reusing_freed_memory():
                pass
            inner_done.set()

        worker = threading.Thread(target=other_user)
        worker.start()
        worker.join()
        assert inner_done.is_set() and calls == [True]
    assert calls == [True, False]
    with pytest.raises(KeyboardInterrupt):
        with allocator.reusing_freed_memory():
            raise KeyboardInterrupt
    assert calls == [True, False, True, False]

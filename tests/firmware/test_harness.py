"""The harness really runs MicroPython (not CPython) with the heap capped like an ESP32."""


def test_code_runs_on_micropython_with_capped_heap(mpy):
    out = mpy(
        "import sys, gc, json\n"
        "gc.collect()\n"
        "print(json.dumps([sys.implementation.name, gc.mem_free() + gc.mem_alloc()]))\n",
        heap_kb=64,
    )
    name, heap_total = out[0]
    assert name == "micropython"
    assert 60 * 1024 <= heap_total <= 64 * 1024


def test_device_exception_is_reported_with_traceback(mpy):
    import pytest

    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        mpy("print(1 // 0)\n")

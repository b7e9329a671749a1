"""Code loaded for one call and dropped again, with every module that call newly imported."""

import gc
import sys


def forget(name):
    """Drop module `name` from sys.modules (a submodule from its package too), so that its
    code leaves the heap at the next collection once nothing refers to it."""
    sys.modules.pop(name, None)
    package, _, leaf = name.rpartition(".")
    parent = sys.modules.get(package) if package else None
    if parent is not None:
        try:
            delattr(parent, leaf)
        except AttributeError:
            pass


def call(module, function, *args):
    """Import `module`, return `function`(*args) of it, then drop every module that the call
    newly imported (`module` included).

    Modules imported before the call are never dropped. The module is referenced only in
    this frame, which has returned before anything collects. An import that runs out of memory
    (a fragmented heap) is tried once more after a collection.
    """
    before = list(sys.modules)
    try:
        try:
            __import__(module)
        except MemoryError:
            # A fragmented heap: drop what the failed import left, collect, and load once more.
            _drop_new(before)
            gc.collect()
            __import__(module)
        return getattr(sys.modules[module], function)(*args)
    finally:
        _drop_new(before)


def _drop_new(before):
    for name in [n for n in sys.modules if n not in before]:
        forget(name)

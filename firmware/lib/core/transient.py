"""Modules loaded for one job and dropped again, so their code leaves the heap afterwards."""

import sys


def load_module(name):
    """Import `name` (dotted names too) for a job needed only now; see unload()."""
    __import__(name)
    return sys.modules[name]


def unload(name):
    """Forget a module loaded for one job so its code leaves the heap at the next collection.

    A submodule is also removed from its package, which holds it as an attribute.
    """
    sys.modules.pop(name, None)
    package, _, leaf = name.rpartition(".")
    parent = sys.modules.get(package) if package else None
    if parent is not None:
        try:
            delattr(parent, leaf)
        except AttributeError:
            pass


def call_loaded(module, function, *args):
    """Call `function` of `module`, loaded for this call only.

    The module is referenced only inside this frame, which has returned before anything
    collects, so dropping it from sys.modules really frees it.
    """
    try:
        return getattr(load_module(module), function)(*args)
    finally:
        unload(module)

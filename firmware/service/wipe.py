"""Service script: remove everything under a directory of the node's flash (the REPL's --clean)."""

import os

_DIR = 0x4000  # the type os.ilistdir() gives a directory


def wipe(path):
    """Remove every file and folder under `path` ("" is the flash root), depth first."""
    for entry in list(os.ilistdir(path)):
        child = (path + "/" if path else "") + entry[0]
        if entry[1] == _DIR:
            wipe(child)
            os.rmdir(child)
        else:
            os.remove(child)

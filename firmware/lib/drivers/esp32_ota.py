"""Full-firmware updates on an ESP32 through MicroPython's esp32.Partition OTA API.

The update client (updater/client.py) calls only these methods, so the same state machine drives
app-slot updates everywhere and image updates here; the emulated board supplies a fake.
The board file exposes an instance as `board.ota`:

    ota_begin(size) -> writer with write(buf) and finish()   image into the next OTA partition
    ota_switch()      boot the written partition next (set_boot)
    ota_running()     label of the partition running now
    ota_commit()      the new image proved healthy: cancel the bootloader's rollback
    ota_rollback()    give the new image up: boot the previous one next (the updater resets)

With CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, a new image that resets before ota_commit() is
reverted by the bootloader itself; the updater notices (ota_running() is the old label).
"""

from micropython import const

BLOCK = const(4096)  # flash erase/write block of an app partition
_IOCTL_BLOCK_COUNT = const(4)


class _Writer:
    """Writes an image block by block into a partition; one 4 KB buffer, erased as written."""

    def __init__(self, part, size):
        blocks = part.ioctl(_IOCTL_BLOCK_COUNT, None)
        if size > blocks * BLOCK:
            raise ValueError("image of %d bytes does not fit the partition" % size)
        self.part = part
        self.size = size
        self.block = 0
        self.fill = 0
        self.buf = bytearray(BLOCK)

    def write(self, data):
        view = memoryview(data)
        while len(view):
            n = min(BLOCK - self.fill, len(view))
            self.buf[self.fill:self.fill + n] = view[:n]
            self.fill += n
            view = view[n:]
            if self.fill == BLOCK:
                self._flush()

    def _flush(self):
        if self.fill < BLOCK:
            for i in range(self.fill, BLOCK):
                self.buf[i] = 0xFF  # erased flash
        self.part.writeblocks(self.block, self.buf)  # two-argument form erases, then writes
        self.block += 1
        self.fill = 0

    def finish(self):
        if self.fill:
            self._flush()
        self.buf = None


class Esp32Ota:
    """The board OTA API on esp32.Partition."""

    def __init__(self):
        import esp32

        self._esp32 = esp32
        self._next = None

    def _running(self):
        return self._esp32.Partition(self._esp32.Partition.RUNNING)

    def ota_begin(self, size):
        self._next = self._running().get_next_update()
        return _Writer(self._next, size)

    def ota_switch(self):
        part = self._next or self._running().get_next_update()
        part.set_boot()

    def ota_running(self):
        return self._running().info()[4]

    def ota_commit(self):
        self._esp32.Partition.mark_app_valid_cancel_rollback()

    def ota_rollback(self):
        # With two OTA partitions the one we came from is the running one's next update
        # target; booting it again is the rollback. The caller resets the board.
        self._running().get_next_update().set_boot()

"""Stand-in for the update client that loads it (about 20 KB of code) only when there is work."""


class LazyUpdater:
    """The update client, loaded only when there is an update to handle: at boot when one is
    under way or unreported (`load_now`), else when a check-in reply assigns one."""

    def __init__(self, board, uplink, root, log, load_now):
        self._board = board
        self._uplink = uplink
        self._root = root
        self._log = log
        self._real = None
        if load_now:
            self._load()

    def _load(self):
        if self._real is None:
            from updater.client import Updater

            board = self._board
            self._real = Updater(self._uplink, board.name, board.epoch_s, board.reset,
                                 root=self._root, ota=getattr(board, "ota", None),
                                 feed=board.feed_watchdog, log=self._log)
        return self._real

    def report(self):
        return self._real.report() if self._real is not None else None

    def offer(self, assignment):
        if self._real is not None or assignment is not None:
            self._load().offer(assignment)

    def on_trial(self):
        return self._real is not None and self._real.on_trial()

    def healthy(self):
        return self._real is not None and self._real.healthy()

    def busy(self):
        return self._real is not None and self._real.busy()

    def step(self):
        return self._real is not None and self._real.step()

    def poll(self, uptime_s):
        if self._real is not None:
            self._real.poll(uptime_s)

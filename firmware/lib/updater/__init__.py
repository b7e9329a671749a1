"""The node's update client: format rules, a verifier without I/O, the key set, the download.

Named `updater` rather than `update` so that it never meets the flash's /update directory
(the client's state) on sys.path."""

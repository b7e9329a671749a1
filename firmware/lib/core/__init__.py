"""The node itself: its loop, boot, configuration, log, files, commands and on-demand code."""

"""Talking to the fleet server: the link, signed exchanges, HTTP, enrollment."""

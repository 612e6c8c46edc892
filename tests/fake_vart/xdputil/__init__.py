"""Fake `python3 -m xdputil query` of the emulated board (see __main__.py)."""

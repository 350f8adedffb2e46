"""The laptop side (`connect`): the standard library only, Python 3.9; imports nothing but `core`."""

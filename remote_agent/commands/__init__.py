"""One module per verb: each reads the user's settings and calls the parts with plain values."""

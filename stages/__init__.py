"""Training stages run by ``train.py``: ``scl`` (SCL-LLE), ``enhancer`` (supervised, LOL) and ``memory`` (EMNet)."""

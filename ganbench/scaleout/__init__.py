"""Scale-out: the ``--jobs`` process pool and torchrun ranks (DDP)."""

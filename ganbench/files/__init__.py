"""Files: atomic writes and the guarded loading of checkpoints."""

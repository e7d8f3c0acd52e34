"""Sample quality: the shipped digit classifier and the evaluation of a run's samples."""

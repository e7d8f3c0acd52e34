"""A sweep: plan -> run each combination (in a fresh supervised process) -> record its row."""

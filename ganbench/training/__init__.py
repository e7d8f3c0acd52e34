"""Training one combination: the D-then-G loop, the step forms, the textbook step,
checkpoints and the measurements taken while it trains."""

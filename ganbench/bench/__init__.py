"""Benchmarks of single operations (``ganbench bench attention``).

Modules, by job: ``shapes`` (what is run), ``timing`` (the core's timer, capture and summary
applied to one call), ``accuracy`` (against the float64 reference), ``roofline`` (device peaks),
``plan`` (which kernels, built how), ``attention`` (the rows: the entry point), ``output`` (the
table, notes and files), ``figure`` (the chart), ``progress`` (what stderr shows meanwhile).
"""


def one_line(prefix: str, exc: BaseException) -> str:
    """'<prefix>: <Type>: <first line of the message>', at most 200 characters: a status cell."""
    return f"{prefix}: {type(exc).__name__}: {exc}".splitlines()[0][:200]

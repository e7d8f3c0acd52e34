"""Results: the table store, its rendering, comparisons, the HTML report and figures."""

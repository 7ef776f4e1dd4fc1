"""The sections of docs/RESULTS.md (``scripts/make_report.py`` puts them together): each a function from
the results file's rows to markdown (tables, plots and their captions; no findings in words)."""

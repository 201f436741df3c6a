"""What a run shows its reader.

markdown.py       results.json sections as text tables and DIR/report.md
plots.py          the figures (accuracy, RSA, concepts, models)
sweep_summary.py  one row per model of a sweep: summary.csv, the printed table, summary.png
"""

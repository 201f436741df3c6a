"""What a run shows its reader.

markdown.py       results.json sections as text tables and DIR/report.md
plots.py          the figures (accuracy, RSA, concepts, models, models with intervals)
sweep_summary.py  one row per model of a sweep: summary.csv, the printed table, summary.png
comparisons.py    a sweep's paired comparisons of models: comparisons.csv, comparisons.png
"""

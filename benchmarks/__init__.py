"""Side-by-side benchmarks: mlsnap's command line against plain ``dvc`` + ``git``.

Run ``python -m benchmarks`` (full sizes, a few minutes) or ``python -m benchmarks --quick``.
"""

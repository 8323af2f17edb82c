"""Benchmarks of digest: the send path, the fetch path and rendering (``python -m bench``).

See BENCHMARKS.md for what each figure means and the latest numbers.
"""

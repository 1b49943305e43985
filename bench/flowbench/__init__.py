"""The parts of ``bench/run.py``: server processes, load generators, the report."""

"""The evaluation harness (`harness.py`), the evaluate stage's arms (`benchmark.py`) and the trajectory explorer."""

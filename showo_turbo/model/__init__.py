"""The Show-o model (`showo.py`), its vocabulary layout (`tokenization.py`) and its samplers (`sampling.py`)."""

"""Active learning: the extrapolation grade (MaxVol active sets) and the selection of configurations
to label (``grade``)."""

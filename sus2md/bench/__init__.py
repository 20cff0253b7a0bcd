"""Benchmarks shipped with the package: throughput of the model and of OpenMM MD (``throughput``) and
facts about the machine for their records (``machine``)."""

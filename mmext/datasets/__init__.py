"""Datasets and data tools. ``mmext.datasets.demo`` generates the embedded
demo data (``python -m mmext.datasets.demo``)."""

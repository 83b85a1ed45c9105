"""Serving the model the pipeline selected: verified loading, one predictor, batch files."""

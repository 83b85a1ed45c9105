"""Serving the model the pipeline selected: the FastAPI app, micro-batching, batch files (the
model itself comes from ``inference``, the log from ``predlog``)."""

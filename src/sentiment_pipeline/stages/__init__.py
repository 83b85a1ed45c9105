"""Thin DVC stage entry points: read params, call the package, write outputs.

Run one as ``python -m sentiment_pipeline <stage>`` (see ``dvc.yaml``)."""

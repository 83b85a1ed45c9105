"""What the served model meets in production: drift of its inputs and outputs, and its accuracy
estimated without labels, read from the prediction log (``sentiment-pipeline monitor``)."""

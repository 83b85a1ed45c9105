"""The selected model for prediction: verified against dvc.lock before unpickling, wrapped in
one predictor, with the compiled inference paths. Serving, batch predict and monitoring use it."""

"""Prediction: image and click transforms, the predictor, the structural integrity strategy (SIS)."""

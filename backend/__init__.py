"""Label Studio ML backend serving FCA-Net click-based interactive segmentation.

``python -m backend serve`` runs the web process (``backend._wsgi:app`` under gunicorn),
``python -m backend worker`` an inference/training worker; see :mod:`backend.config` for settings.
"""

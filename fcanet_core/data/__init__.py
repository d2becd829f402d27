"""Datasets on disk: image/mask folders and their samples."""

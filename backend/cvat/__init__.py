"""The CVAT interactor: CVAT's nuclio request in, a full-frame mask out, through the same queue and model."""

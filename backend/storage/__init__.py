"""Everything persisted under ``MODEL_DIR``: model versions, collected examples, the webhook spool."""

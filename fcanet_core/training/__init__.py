"""Training: click simulation, click loss, examples and batches, the step, data parallelism, fine-tuning."""

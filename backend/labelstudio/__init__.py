"""Label Studio in and out: its API client, regions and labeling configs, prompts, masks, annotations, the adapter."""

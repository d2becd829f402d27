"""The model behind a queue: engine, click jobs and their payloads, runners, the worker and its prefetcher."""

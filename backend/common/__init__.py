"""Small shared parts: errors with an HTTP status, logging, locks, an LRU cache, deadlines, single-flight."""

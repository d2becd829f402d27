"""The robot user and what is measured with it."""

"""Thin wrappers: one activity per agent operation; failures mapped to retryable or not."""

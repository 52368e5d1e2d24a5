"""Leaf plumbing every process shares (log set-up, SSE wire format, reconnect back-off, the
worker's task-environment contract). Imports nothing else of the project."""

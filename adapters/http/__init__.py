"""aiohttp: the REST API on Mantis v1 paths, SSE and WebSocket streams, the OpenAPI document."""

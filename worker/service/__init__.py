"""The running service's edges and shared state: HTTP server, status page, intake, claims.

Also the API health loop, shutdown and the Redis connection. Imports handlers, api and below;
never rounds or the daemon.
"""

__all__: list[str] = []

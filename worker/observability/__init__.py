"""What an operator sees: health, Prometheus metrics, structured logs and traces.

Imports only config, models and errors.
"""

__all__: list[str] = []

"""Speaking HTTP to a provider: the transport, the typed client, reading answers and streams.

Also the request budget, the retry policy and the API's clock. Imports only observability,
config and the shared models below it; the next protocol's adapter lands here.
"""

__all__: list[str] = []

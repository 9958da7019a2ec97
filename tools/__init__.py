"""Ready-made tool handlers; ``tool_worker_tools.builtin`` is registered by default and is the example to copy."""

__all__: list[str] = []

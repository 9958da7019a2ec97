"""What handler authors touch: ``@tool``, ``@resource``, ``ToolContext`` and the registry.

Also the JSON schema built from signatures and the assistant sync. Imports api (for sync)
and below; never rounds or service.
"""

__all__: list[str] = []

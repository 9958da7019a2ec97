"""Configuration: the frozen settings (``settings``), loading them (``loading``), secrets.

Import the settings types from ``worker.config.settings`` directly. Imports only ids and errors.
"""

__all__: list[str] = []

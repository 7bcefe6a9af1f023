"""EggPool: one endpoint in front of many LLM provider accounts."""

__version__ = "0.1.0.dev0"

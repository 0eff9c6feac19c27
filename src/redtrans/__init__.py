"""redtrans: SNS-aware machine translation with LLMs."""

__version__ = "0.1.0"

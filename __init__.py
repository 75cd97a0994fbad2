"""SoulPrint Stream: chat-history exports in, a personal assistant's memory out.

The repository root is the ``soulprint`` package (see pyproject.toml).
"""

__version__ = "0.1.0"

"""Streaming parser for ChatGPT and claude.ai data exports.

    from soulprint.domain.parsing import ExportReader, ExportError, ParseLimits

    reader = ExportReader("export.zip", limits=ParseLimits())
    for conversation in reader:      # models.domain.Conversation, one at a time
        ...
    reader.summary                   # ExportSummary, final after the loop
    reader.profile                   # ProfileHints (custom instructions, saved memory)

Every bad input raises ExportError with a one-line message and a ``code``.
"""

from .backend import require_c_backend
from .errors import CODES, ExportError
from .limits import ParseLimits
from .reader import ExportReader

__all__ = ["ExportReader", "ExportError", "ParseLimits", "require_c_backend", "CODES"]

"""Every prompt the pipeline sends, as data: one module per LLM task.

Each module holds its :class:`~soulprint.models.llm.PromptSpec` (the system
prompt, static so it is the cacheable prefix shared by all users, a user
template, the output tool's name and token budget), the pydantic model of its
answer (the tool's input_schema and the answer's validator at once) and its
request builder. Rendering is pure string work: nothing here imports
services, and the offline provider never reads these texts (it works from the
payload), so prompts can be edited without touching the rules. Editing a
prompt's text means bumping its ``version`` (the version is part of the
response-cache key; tests/test_llm_prompts.py pins each text to its version).

  quick_sections  the five SoulPrint sections from a sample (the quick pass).
  facts           durable facts from medium chunks (domain/facts.py).
  reduce          merging consolidated facts that exceed a budget (domain/consolidation.py).
  memory          the MEMORY document from consolidated facts (domain/memory_doc.py).
  sections_v2     the five sections rewritten from MEMORY and a sample (domain/memory_doc.py).
  answer          the person's assistant answering a message from the soulprint and history (services/query.py).
"""

from soulprint.domain.prompts.answer import ANSWER
from soulprint.domain.prompts.facts import FACTS
from soulprint.domain.prompts.memory import MEMORY
from soulprint.domain.prompts.quick_sections import QUICK_SECTIONS
from soulprint.domain.prompts.reduce import REDUCE
from soulprint.domain.prompts.sections_v2 import SECTIONS_V2
from soulprint.models.llm import PromptSpec

PROMPTS: dict[str, PromptSpec] = {p.task: p for p in (QUICK_SECTIONS, FACTS, REDUCE, MEMORY, SECTIONS_V2, ANSWER)}

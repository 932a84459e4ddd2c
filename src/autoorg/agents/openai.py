"""`backend: openai` — autoorg's own tool loop on the OpenAI SDK (Responses API; `autoorg agent --backend openai`).

Key and endpoint: OPENAI_API_KEY, OPENAI_BASE_URL. The loop itself is in `autoorg.agent_loop`.
"""

from __future__ import annotations

from autoorg.agents import register
from autoorg.agents.sdk import SdkBackend

register(SdkBackend("openai", key_var="OPENAI_API_KEY", sdk="openai"))

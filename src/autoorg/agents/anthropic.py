"""`backend: anthropic` — autoorg's own tool loop on the Anthropic SDK (`autoorg agent --backend anthropic`).

Key and endpoint: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL. The loop itself is in `autoorg.agent_loop`.
"""

from __future__ import annotations

from autoorg.agents import register
from autoorg.agents.sdk import SdkBackend

register(SdkBackend("anthropic", key_var="ANTHROPIC_API_KEY", sdk="anthropic"))

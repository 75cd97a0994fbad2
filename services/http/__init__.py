"""The query service over HTTP: one ASGI app (REST, the OpenAI-compatible chat endpoint, MCP at /mcp)."""

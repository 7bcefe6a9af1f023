"""The anyio + h11 shell: a minimal-footprint server that runs on asyncio and on trio."""

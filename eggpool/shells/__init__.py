"""I/O shells that drive the pure core: sockets, files and the clock live here, policy does not.

See docs/architecture.md: `asyncio_shell` (anyio + h11) and `quart_app`
(Quart on Hypercorn) share one runtime and expose the same API.
"""

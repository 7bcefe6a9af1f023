"""A simulated provider: scripted replies in the shape real providers send them.

`provider.FakeProvider` is Sans-IO (an `OpenUpstream` effect in, the upstream
events it would cause out), so the test harness and `eggpool simulate` can
run the Pool on a virtual clock; `server.served_provider` plays the same
replies on a real loopback socket for `eggpool demo` and end-to-end tests;
`wire` holds the bytes (heads, bodies, SSE streams, error shapes).
"""

DEMO_PORT = 11300
"""Where `eggpool demo` listens unless told otherwise (or that port is taken). Here, not in
`eggpool.cli._demo`, so the CLI can show it without importing the demo."""

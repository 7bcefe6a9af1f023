"""The Quart shell: the same API as a Quart application served by Hypercorn."""

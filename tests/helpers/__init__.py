"""Helpers shared by tests/, fuzz/ and bench/: fixtures that are code, not tests."""

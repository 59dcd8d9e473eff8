"""The data-path tests use the Omniglot fixtures of tests/conftest.py (shared with tests/original)."""

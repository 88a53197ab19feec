"""Shared pytest configuration; tests/ mirrors the packages (tests/protocol, ...)."""

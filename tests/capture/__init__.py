"""Tests of otids.capture."""

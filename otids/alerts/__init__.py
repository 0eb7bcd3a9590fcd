"""The alert model (EVE-shaped records) and the sinks that deliver them."""

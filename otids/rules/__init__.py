"""Rule loading and evaluation over the documented field vocabulary."""

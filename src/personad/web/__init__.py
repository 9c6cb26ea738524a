"""Browser page assets."""

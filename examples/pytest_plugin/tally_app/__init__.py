"""A tiny application whose worker the sample tests exercise."""

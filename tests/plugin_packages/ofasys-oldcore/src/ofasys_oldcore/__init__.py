"""A plugin written for an ofasys release that does not exist (version-conflict tests)."""

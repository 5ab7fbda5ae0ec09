# The ofasys conformance suite's fixtures (ofasys_plugin_manager, ofasys_isolated_manager).
pytest_plugins = ["ofasys.testing"]

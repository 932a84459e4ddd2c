"""autoorg's suite runs on the fixtures of `autoorg.testing.pytest_plugin`; nothing else here is local."""

pytest_plugins = ["autoorg.testing.pytest_plugin"]

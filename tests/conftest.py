pytest_plugins = ["onceonly.testing"]

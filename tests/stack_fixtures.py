def pytest_configure(config):  # placeholder until the stack fixtures land
    pass

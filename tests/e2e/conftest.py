"""End-to-end tests: the fabric (capture -> compile -> runtime -> emulator) against eager
PyTorch. ``-m "not e2e_slow"`` skips the (reduced) ResNet-18 case."""


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e_slow: the largest end-to-end case (reduced "
                            "ResNet-18, ~25 s on 2 cores); runs in CI")

"""A crashed test worker fails its test once; the run goes on to pytest's summary line."""

import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Under `--dist loadgroup`, a test that kills its worker (a native crash, or pytest-timeout
    ending a hang) fails once and the suite goes on. xdist 3.8 hands the crashed test's group back
    whole, the crashed test still pending, so it would kill worker after worker until the restart
    limit and the rest of its group would never run; no option of xdist changes that."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class CrashedTestsRunOnce(LoadGroupScheduling):
        def remove_node(self, node):
            units = self.assigned_work.get(node, {}).values()
            crashed = next((test for unit in units for test, done in unit.items() if not done), None)
            for unit in units:
                if crashed in unit:
                    unit[crashed] = True  # reported failed by xdist, as "crashed while running"
            super().remove_node(node)
            return crashed

    return CrashedTestsRunOnce(config, log)

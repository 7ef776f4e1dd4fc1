"""pytest's root configuration: the shared fixture modules get pytest's assertion rewriting even when a
test module imports a helper from them before pytest loads them as plugins."""
import pytest

pytest.register_assert_rewrite("tests.core_fixtures", "tests.dashboard_fixtures")

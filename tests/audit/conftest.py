import pytest

from audit_cases import long_tail_case


@pytest.fixture
def case():
    return long_tail_case()

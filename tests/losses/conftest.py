import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """These tests use tiny tensors: on a shared 2-core machine the intra-op thread pool only adds
    contention (10-100x slower per op), so run them single-threaded and restore the setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

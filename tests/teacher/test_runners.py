"""Teacher runners on tiny models built from configs: outputs equal a direct forward pass; bad teachers stop."""

from __future__ import annotations

import numpy as np
import pytest
from teacher_helpers import CLASSES, build_tiny_bert, make_tokenizer

from distillab.errors import InputError
from distillab.teacher.cache import TeacherCache
from distillab.teacher.capture import topk_outputs
from distillab.teacher.causal_lm import cache_causal_lm
from distillab.teacher.hf_classifier import cache_classifier


def direct_logits(model_dir, texts, max_length=128):
    """One text at a time, no padding: the reference the batched, length-sorted runner must match."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.inference_mode():
        return np.concatenate([model(**tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt"))
                               .logits.numpy() for t in texts])


def test_classifier_cache_equals_direct_forward_over_temperature(tmp_path, tiny_bert, dataset):
    out = cache_classifier(tiny_bert, dataset, tmp_path / "c", temperature=1.5, batch_size=5, shard_rows=16,
                           progress=False)
    cache = TeacherCache.open(out, verify=True)
    cache.check_matches(dataset)
    texts = dataset.splits["train"].texts + dataset.splits["test"].texts
    expected = direct_logits(tiny_bert, texts) / 1.5
    np.testing.assert_allclose(cache.logits(cache.ids), expected, rtol=2e-3, atol=2e-3)
    assert cache.temperature == 1.5 and cache.manifest["fingerprint"]["capture"]["temperature"] == 1.5
    assert cache.manifest["fingerprint"]["teacher"]["architecture"] == "BertForSequenceClassification"
    assert len(cache.manifest["fingerprint"]["teacher"]["weights_sha256"]) == 64


def test_classifier_topk_and_split_selection(tmp_path, tiny_bert, dataset):
    out = cache_classifier(tiny_bert, dataset, tmp_path / "c", splits=["test"], topk=2, progress=False)
    cache = TeacherCache.open(out)
    assert cache.splits == {"test": 12} and cache.kind == "topk" and cache.k == 2
    expected = topk_outputs(direct_logits(tiny_bert, dataset.splits["test"].texts), 2)
    ids, logprobs, tail = cache.topk(dataset.splits["test"].ids)
    np.testing.assert_array_equal(ids, expected["topk_ids"])
    np.testing.assert_allclose(logprobs, expected["topk_logprobs"], atol=2e-3)
    np.testing.assert_allclose(tail, expected["tail_logmass"], atol=1e-4)
    assert 0 < cache.manifest["truncation"]["mass_lost_mean"] < 1


def test_label_count_and_order_mismatches_stop_before_writing(tmp_path, dataset):
    five = build_tiny_bert(tmp_path / "five", num_labels=5)
    with pytest.raises(InputError, match="has 5 output labels but the dataset has 3 classes"):
        cache_classifier(five, dataset, tmp_path / "c1", progress=False)
    shuffled = build_tiny_bert(tmp_path / "shuffled", id2label=dict(enumerate(CLASSES[::-1])))
    with pytest.raises(InputError, match="same names in a different order.*class 0: model 'earn', dataset 'grain'"):
        cache_classifier(shuffled, dataset, tmp_path / "c2", progress=False)
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()
    cache_classifier(shuffled, dataset, tmp_path / "c3", check_label_names=False, progress=False)


def test_nan_from_the_teacher_is_a_clear_error(tmp_path, tiny_bert, dataset):
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    with torch.no_grad():
        model.classifier.bias[1] = float("nan")
    with pytest.raises(InputError, match="NaN or inf in 'logits' for row 'tiny-train-0'"):
        cache_classifier(model, dataset, tmp_path / "c", tokenizer=make_tokenizer(), progress=False)


def test_causal_lm_per_token_topk_matches_direct_forward(tmp_path, tiny_llama, dataset):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = cache_causal_lm(tiny_llama, dataset, tmp_path / "c", k=4, splits=["test"], max_length=12, batch_size=3,
                          temperature=2.0, shard_rows=5, progress=False)
    cache = TeacherCache.open(out, verify=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    row_ids = dataset.splits["test"].ids
    top_ids, top_lp, tail = cache.topk(row_ids)
    n_tokens = cache.num_tokens(row_ids)
    assert top_ids.shape == (12, 12, 4) and cache.width == len(tokenizer)
    for i, text in enumerate(dataset.splits["test"].texts):
        encoded = tokenizer(text, truncation=True, max_length=12, return_tensors="pt")
        n = encoded["input_ids"].shape[1]
        assert n_tokens[i] == n
        np.testing.assert_array_equal(cache.input_ids(row_ids[i:i + 1])[0, :n], encoded["input_ids"][0].numpy())
        with torch.inference_mode():
            expected = topk_outputs(model(**encoded).logits[0] / 2.0, 4)
        np.testing.assert_array_equal(top_ids[i, :n], expected["topk_ids"])
        np.testing.assert_allclose(top_lp[i, :n], expected["topk_logprobs"], atol=5e-3)
        np.testing.assert_allclose(tail[i, :n], expected["tail_logmass"], atol=1e-4)
    truncation = cache.manifest["truncation"]
    assert truncation["positions"] == int(n_tokens.sum())
    assert 0 < truncation["mass_lost_mean"] < 1 and truncation["kl_uniform_tail_mean"] >= 0


def test_a_loaded_tokenizer_is_used_with_a_model_path(tmp_path, tiny_bert, dataset):
    """A tokenizer object passed with a model *path* is the one used (it was replaced by the folder's)."""
    import shutil

    bare = tmp_path / "bare"  # weights only: the folder's own tokenizer would be nearly empty
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(f"{tiny_bert}/{name}", bare / name)
    out = cache_classifier(str(bare), dataset, tmp_path / "c", tokenizer=make_tokenizer(), splits=["test"],
                           dtype="fp32", progress=False)
    expected = direct_logits(tiny_bert, dataset.splits["test"].texts)
    np.testing.assert_allclose(TeacherCache.open(out).logits(dataset.splits["test"].ids), expected, rtol=1e-4, atol=1e-4)

"""Cut students copy the right teacher layers; a student with another vocabulary is refused by name."""

import pytest
import torch

from distillab.errors import InputError
from distillab.lm.models import check_student, cut_student, uniform_layers, vocabulary_problem
from lm_helpers import WORDS, make_tokenizer, tiny_llama


def test_uniform_pick_keeps_first_and_last():
    assert uniform_layers(30, 6) == [0, 6, 12, 17, 23, 29]
    assert uniform_layers(30, 4) == [0, 10, 19, 29]
    assert uniform_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(InputError):
        uniform_layers(4, 5)


def test_cut_student_copies_the_picked_layers_embeddings_and_norm():
    teacher = tiny_llama(len(make_tokenizer()), layers=6, seed=3)
    student = cut_student(teacher, 3)
    picked = uniform_layers(6, 3)
    assert picked == [0, 2, 5] and student.config.num_hidden_layers == 3
    assert student.config.distillab_cut == {"teacher_layers": 6, "picked": picked}
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for j, i in enumerate(picked):
        for name in ("self_attn.q_proj.weight", "self_attn.o_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            torch.testing.assert_close(s_state[f"model.layers.{j}.{name}"], t_state[f"model.layers.{i}.{name}"])
    torch.testing.assert_close(s_state["model.embed_tokens.weight"], t_state["model.embed_tokens.weight"])
    torch.testing.assert_close(s_state["model.norm.weight"], t_state["model.norm.weight"])
    assert student.get_output_embeddings().weight.data_ptr() == student.get_input_embeddings().weight.data_ptr()
    assert student.get_input_embeddings().weight.data_ptr() != teacher.get_input_embeddings().weight.data_ptr()
    # a copy, not a view: training the student leaves the teacher as it was
    with torch.no_grad():
        student.model.layers[1].mlp.down_proj.weight.add_(1.0)
    assert not torch.equal(student.model.layers[1].mlp.down_proj.weight, teacher.model.layers[2].mlp.down_proj.weight)


def test_cut_with_all_layers_reproduces_the_teacher_and_caches_work():
    teacher = tiny_llama(len(make_tokenizer()), layers=3, seed=4)
    student = cut_student(teacher, [0, 1, 2])
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(student(input_ids=ids).logits, teacher(input_ids=ids).logits)
    explicit = cut_student(teacher, [2, 0])  # explicit indices, any order
    out = explicit.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=1)  # KV cache by new layer index
    assert out.shape == (1, 7)


def test_a_different_vocabulary_is_refused_naming_the_first_differing_token():
    teacher_tok = make_tokenizer()
    other = list(WORDS)
    other[5], other[6] = other[6], other[5]
    problem = vocabulary_problem(teacher_tok, make_tokenizer(other))
    assert problem == f"token id 7 is {WORDS[5]!r} for the teacher but {WORDS[6]!r} for the student"
    assert vocabulary_problem(teacher_tok, make_tokenizer()) is None
    longer = make_tokenizer(list(WORDS) + ["extra"])
    assert "token id" in vocabulary_problem(teacher_tok, longer) and "'extra'" in vocabulary_problem(teacher_tok, longer)
    student = tiny_llama(len(longer), layers=1)
    with pytest.raises(InputError, match=r"^cfg.yaml: the student's tokenizer is not the teacher's: token id"):
        check_student(student, longer, teacher_tok, len(teacher_tok), "cfg.yaml")


def test_a_student_with_another_output_width_is_refused():
    tok = make_tokenizer()
    with pytest.raises(InputError, match="predicts 50 tokens but the teacher 35"):
        check_student(tiny_llama(50, layers=1), tok, tok, len(tok), "cfg.yaml")

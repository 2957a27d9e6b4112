"""The course colleague's KD loss (ECBS5200 week 6 lab): it trains, the loss goes down, and it is wrong.

Run ``distillab check-loss examples/buggy_kd_loss.py:distillation_loss`` to see the checker name its
three silent bugs; ``fixed_distillation_loss`` is the corrected version and passes.
"""

import torch.nn.functional as F


def distillation_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.7):
    ce = F.cross_entropy(student_logits, labels)
    # Bug 1: F.softmax where F.kl_div expects log-probabilities as its first argument.
    # Bug 2: no T**2 factor on the KL term.
    kl = F.kl_div(F.softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1), reduction="batchmean")
    # Bug 3: alpha and 1 - alpha swapped (alpha should weight the KL term).
    return alpha * ce + (1 - alpha) * kl


def fixed_distillation_loss(student_logits, teacher_logits, labels, T=4.0, alpha=0.7):
    ce = F.cross_entropy(student_logits, labels)
    kl = F.kl_div(F.log_softmax(student_logits / T, dim=-1), F.softmax(teacher_logits / T, dim=-1), reduction="batchmean")
    return alpha * T**2 * kl + (1 - alpha) * ce

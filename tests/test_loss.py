import math

import pytest
import torch

from pipeline.distill import distillation_loss
from pipeline.soft_targets import NO_LABEL

STUDENT = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
TEACHER = torch.tensor([[3.0, 0.0, -2.0], [-1.0, 2.0, 0.5]])
LABELS = torch.tensor([0, 1])


def softmax(row, t):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def hand_ce():
    return sum(-math.log(softmax(s, 1.0)[y]) for s, y in zip(STUDENT.tolist(), LABELS.tolist())) / 2


def hand_kl(t):
    total = 0.0
    for s, te in zip(STUDENT.tolist(), TEACHER.tolist()):
        p, q = softmax(te, t), softmax(s, t)
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    return total / 2  # batchmean


def test_alpha_one_is_cross_entropy():
    loss = distillation_loss(STUDENT, TEACHER, LABELS, alpha=1.0, temperature=3.0)
    assert loss.item() == pytest.approx(hand_ce(), abs=1e-6)


def test_alpha_zero_is_scaled_kl():
    loss = distillation_loss(STUDENT, TEACHER, LABELS, alpha=0.0, temperature=3.0)
    assert loss.item() == pytest.approx(9.0 * hand_kl(3.0), abs=1e-6)


@pytest.mark.parametrize("alpha,t", [(0.3, 2.0), (0.5, 4.0), (0.9, 1.0)])
def test_mixture(alpha, t):
    loss = distillation_loss(STUDENT, TEACHER, LABELS, alpha=alpha, temperature=t)
    expected = alpha * hand_ce() + (1 - alpha) * t * t * hand_kl(t)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_t_squared_keeps_soft_gradient_scale():
    """Without T^2 the soft-target gradient shrinks like 1/T^2; with it, it stays put
    (Hinton et al. 2015). Compare T=8 and T=16: the gradient norm ratio is near 1."""

    def grad_norm(t):
        s = STUDENT.clone().requires_grad_(True)
        distillation_loss(s, TEACHER, LABELS, alpha=0.0, temperature=t).backward()
        return s.grad.norm().item()

    ratio = grad_norm(8.0) / grad_norm(16.0)
    assert ratio == pytest.approx(1.0, abs=0.1)
    # And the unscaled KL's gradient does shrink by about 4x over the same doubling.
    s = STUDENT.clone().requires_grad_(True)
    (distillation_loss(s, TEACHER, LABELS, 0.0, 8.0) / 64).backward()
    unscaled_8 = s.grad.norm().item()
    s = STUDENT.clone().requires_grad_(True)
    (distillation_loss(s, TEACHER, LABELS, 0.0, 16.0) / 256).backward()
    assert unscaled_8 / s.grad.norm().item() == pytest.approx(4.0, rel=0.15)


def test_identical_logits_give_zero_soft_loss():
    loss = distillation_loss(TEACHER, TEACHER, LABELS, alpha=0.0, temperature=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_transfer_rows_have_soft_targets_only():
    # Row 1 is a transfer-set row: no label. CE is row 0's alone, KL the mean over both rows.
    labels = torch.tensor([0, NO_LABEL])
    ce = -math.log(softmax(STUDENT[0].tolist(), 1.0)[0])
    loss = distillation_loss(STUDENT, TEACHER, labels, alpha=0.5, temperature=2.0)
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * 4.0 * hand_kl(2.0), abs=1e-6)


def test_a_batch_of_transfer_rows_only_is_soft_targets_only():
    labels = torch.tensor([NO_LABEL, NO_LABEL])
    loss = distillation_loss(STUDENT, TEACHER, labels, alpha=0.5, temperature=2.0)
    assert loss.item() == pytest.approx(0.5 * 4.0 * hand_kl(2.0), abs=1e-6)


def test_labelled_rows_give_bit_for_bit_the_plain_loss():
    plain = torch.nn.functional.cross_entropy(STUDENT, LABELS)
    assert distillation_loss(STUDENT, TEACHER, LABELS, alpha=1.0, temperature=2.0).equal(plain)

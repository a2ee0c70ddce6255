"""Active dendrites in the continual learner: the gate takes the segment that answers the context,
k-winners on the gated activity, the prototype context inferred from the input at test time (never
given), and a dendritic learner through a permuted stream."""

from __future__ import annotations

import pytest
import torch

from pipeline.models.continual import ContinualSpec
from pipeline.models.continual.dendrites import Context, DendriticLayer, dendritic_gate, nearest_prototype
from tests.models.test_continual import network, run_stream, splits


def test_the_gate_takes_the_segment_of_largest_response_to_the_context():
    # Two units, three segments each, over a 3-d context: segment j of each unit answers context e_j.
    segments = torch.zeros(2, 3, 3)
    segments[0] = torch.diag(torch.tensor([2.0, -3.0, 0.5]))
    segments[1] = torch.diag(torch.tensor([1.0, 1.0, 1.0]))
    context = Context()
    layer = DendriticLayer(4, 2, 3, 3, percent_on=1.0, context=context)
    with torch.no_grad():
        layer.segments.copy_(segments)
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    x = torch.ones(3, 4)  # u = 4 for both units
    context.set(torch.eye(3))  # example k gets context e_k: segment k answers
    out = layer.eval()(x)
    expected = 4 * torch.sigmoid(torch.tensor([[2.0, 1.0], [-3.0, 1.0], [0.5, 1.0]]))
    assert torch.allclose(out, expected)
    # The largest in magnitude wins, whatever its sign.
    responses = torch.tensor([[[0.5, -2.0, 1.0]]])
    assert torch.allclose(dendritic_gate(torch.ones(1, 1), responses), torch.sigmoid(torch.tensor([[-2.0]])))


def test_k_winners_keep_percent_on_of_the_gated_units():
    context = Context()
    layer = DendriticLayer(6, 20, 2, 6, percent_on=0.2, context=context).train()
    context.set(torch.rand(2, 6), torch.tensor([0, 1, 1, 0, 1]))
    assert ((layer(torch.rand(5, 6)) != 0).sum(dim=1) == 4).all()
    context.current = None
    with pytest.raises(RuntimeError, match="without a context"):
        layer(torch.rand(5, 6))


def test_the_nearest_known_prototype_is_inferred():
    prototypes = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    known = torch.tensor([True, True, False])
    inputs = torch.tensor([[9.0, 1.0], [1.0, 9.0], [-1.0, 0.0]])
    # The third prototype is not known yet: (1, 9) is nearer (0, 0) than (10, 0).
    vectors, index = nearest_prototype(inputs, prototypes, known)
    assert torch.equal(vectors[index], prototypes[[1, 0, 0]])
    vectors, index = nearest_prototype(inputs, prototypes, torch.zeros(3, dtype=torch.bool))
    assert torch.equal(vectors[index], torch.zeros(3, 2))


def test_a_dendritic_learner_infers_each_permuted_experiences_prototype_at_test_time():
    net = network(scenario={"type": "domain_incremental", "experiences": 3}, hidden=[32, 32],
                  dendrites={"segments": 3, "percent_on": 0.25})
    measured = run_stream(net, splits(n_train=300))
    assert bool(net.prototype_known.all())
    for index, experience in enumerate(net.experiences):
        assert torch.allclose(net.prototypes[index], experience.train["input"].flatten(1).float().mean(0) / 255,
                              atol=1e-5)
        net.eval()
        inputs = experience.test["input"].flatten(1).float() / 255
        vectors, index_of = nearest_prototype(inputs, net.prototypes, net.prototype_known)
        inferred = vectors[index_of]
        own = (inferred == net.prototypes[index]).all(dim=1).float().mean().item()
        # The toy images are mostly noise, and their permutations' prototypes close: most get their own
        # experience's context all the same (chance: a third).
        assert own > 0.7, own
    assert measured[-1]["continual/average_accuracy_seen"] > 0.2
    with pytest.raises(ValueError, match="leave latent_layer"):
        ContinualSpec(kind="continual", dendrites={}, latent_layer=1)


def test_a_standardised_context_has_zero_mean_and_unit_variance():
    from pipeline.models.continual.dendrites import Context

    vectors = torch.rand(3, 50) * 0.3 + 0.2
    plain, standardised = Context(), Context(standardise=True)
    plain.set(vectors)
    standardised.set(vectors, torch.tensor([2, 0]))
    assert torch.equal(plain.current[0], vectors)
    given, index = standardised.current
    assert index.tolist() == [2, 0]
    assert torch.allclose(given.mean(dim=1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(given.std(dim=1), torch.ones(3), atol=1e-5)

"""The weight average (``contextclip.ema``): its arithmetic, what it follows, and putting weights back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contextclip.ema import WeightAverage, averaged_state_dict


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    net[2].weight.requires_grad_(False)  # a frozen weight: never averaged
    return net


def test_the_average_follows_the_formula_with_its_warm_up():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    w0 = net[0].weight.detach().clone()
    expected = w0.clone()
    for n in range(1, 6):
        with torch.no_grad():
            net[0].weight.add_(1.0)
        avg.update(net)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * net[0].weight.detach()
        assert avg.current_decay() == pytest.approx(d)  # the decay of the latest update
    assert torch.allclose(avg.shadow["0.weight"], expected, atol=1e-6)
    assert "2.weight" not in avg.shadow  # frozen
    assert "1.running_mean" in avg.shadow and "1.num_batches_tracked" in avg.shadow


def test_batch_norm_statistics_are_averaged_and_step_counters_copied():
    net = _net().train()
    avg = WeightAverage(net, decay=0.5)
    net(torch.randn(8, 3) + 3.0)  # moves the running mean, counts one batch
    avg.update(net)
    assert int(avg.shadow["1.num_batches_tracked"]) == 1
    live = net[1].running_mean
    assert not torch.equal(avg.shadow["1.running_mean"], live)  # averaged, so it lags
    assert torch.allclose(avg.shadow["1.running_mean"], (1 - 2 / 11) * live, atol=1e-6)  # start was 0


def test_applied_swaps_in_the_average_and_puts_the_trained_weights_back():
    net = _net()
    avg = WeightAverage(net, decay=0.9)
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    trained = {k: v.clone() for k, v in net.state_dict().items()}
    avg.update(net)
    with avg.applied(net) as m:
        assert torch.equal(m[0].weight, avg.shadow["0.weight"])
    assert all(torch.equal(trained[k], v) for k, v in net.state_dict().items())
    with pytest.raises(RuntimeError), avg.applied(net):
        raise RuntimeError("evaluation failed")
    assert all(torch.equal(trained[k], v) for k, v in net.state_dict().items())  # also after an error


def test_saved_and_restored_state_continues_exactly():
    a, b = _net(), _net()
    avg_a = WeightAverage(a, 0.9)
    for _ in range(3):
        with torch.no_grad():
            a[0].weight.add_(0.5)
        avg_a.update(a)
    avg_b = WeightAverage(b, 0.9)
    avg_b.load_state_dict(avg_a.state_dict())
    assert avg_b.updates == 3 and all(torch.equal(avg_a.shadow[k], avg_b.shadow[k]) for k in avg_a.shadow)
    full = averaged_state_dict(a.state_dict(), avg_a.state_dict())
    assert torch.equal(full["0.weight"], avg_a.shadow["0.weight"]) and torch.equal(full["2.weight"], a[2].weight)
    assert averaged_state_dict(a.state_dict(), None) is not None
    with pytest.raises(KeyError, match="another model"):
        WeightAverage(nn.Linear(3, 4), 0.9).load_state_dict({"updates": 1, "shadow": {}})


def test_a_decay_outside_the_open_unit_interval_is_refused():
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="decay"):
            WeightAverage(_net(), bad)

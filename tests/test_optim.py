"""deepstyle.optim: SGD (momentum, eq. 33 weight decay), the sampling schemes of section 4,
learning-rate schedules, the training loop, and the fused single-point trainer."""

import io

import numpy as np
import pytest

from deepstyle import netbp, nn, optim


def linear_net(seed=0):
    rng = np.random.default_rng(seed)
    net = nn.Sequential([("fc", nn.Linear(3, 2, rng=rng))])
    net["fc"].bias[...] = rng.standard_normal(2)
    return net


def backward_once(net, seed=1):
    rng = np.random.default_rng(seed)
    out = net.forward(rng.standard_normal((4, 3)))
    net.backward(rng.standard_normal(out.shape).astype(np.float32))


# --- SGD ----------------------------------------------------------------------------------------


def test_sgd_step_is_eq12():
    net = linear_net()
    backward_once(net)
    before = {name: value.copy() for name, value, _ in net.parameters()}
    optim.SGD(net, lr=0.1).step()
    for name, value, grad in net.parameters():
        np.testing.assert_allclose(value, before[name] - 0.1 * grad, rtol=1e-6)


def test_weight_decay_applies_to_weights_not_biases():
    """Eq. (33): lambda/N ||W||^2 adds 2 lambda/N W to the weight gradient only."""
    net = linear_net()
    backward_once(net)
    w, b = net["fc"].weight.copy(), net["fc"].bias.copy()
    gw, gb = net["fc"].grad_weight, net["fc"].grad_bias
    lam, n = 0.3, 10
    optim.SGD(net, lr=0.1, weight_decay=2 * lam / n).step()
    np.testing.assert_allclose(net["fc"].weight, w - 0.1 * (gw + 2 * lam / n * w), rtol=1e-6)
    np.testing.assert_allclose(net["fc"].bias, b - 0.1 * gb, rtol=1e-6)


def test_momentum_accumulates_velocity():
    net = linear_net()
    sgd = optim.SGD(net, lr=0.1, momentum=0.9)
    w0 = net["fc"].weight.copy()
    backward_once(net, seed=1)
    g1 = net["fc"].grad_weight.copy()
    sgd.step()
    backward_once(net, seed=2)
    g2 = net["fc"].grad_weight.copy()
    sgd.step()
    np.testing.assert_allclose(net["fc"].weight, w0 - 0.1 * g1 - 0.1 * (0.9 * g1 + g2),
                               rtol=1e-5)


def test_sgd_leaves_frozen_layers_alone():
    net = nn.Sequential([("a", nn.Linear(3, 3, rng=0)), ("b", nn.Linear(3, 2, rng=1))])
    net["a"].trainable = False
    frozen = net["a"].weight.copy()
    backward_once(net)
    optim.SGD(net, lr=1.0).step()
    np.testing.assert_array_equal(net["a"].weight, frozen)


@pytest.mark.parametrize("kwargs, message", [
    ({"lr": 0}, r"lr: expected a number in \(0"),
    ({"lr": float("nan")}, "lr: expected a number"),
    ({"lr": 0.1, "momentum": 1.0}, r"momentum: expected a number in \[0.0, 1.0\)"),
    ({"lr": 0.1, "weight_decay": -1}, "weight_decay: expected a number"),
])
def test_sgd_rejects_bad_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.SGD(linear_net(), **kwargs)


# --- sampling -----------------------------------------------------------------------------------


def test_with_replacement_is_uniform_and_reproducible():
    """Eq. (15): indices independent and uniform over {0..N-1} (a chi-square check)."""
    sampler = optim.WithReplacement(10, rng=0)
    idx = sampler.indices(100_000)
    assert idx.shape == (100_000, 1)
    counts = np.bincount(idx.ravel(), minlength=10)
    chi2 = np.sum((counts - 10_000) ** 2 / 10_000)
    assert chi2 < 27.9  # 99.9% quantile of chi-square with 9 degrees of freedom
    np.testing.assert_array_equal(optim.WithReplacement(10, rng=0).indices(50), idx[:50])
    batches = optim.WithReplacement(10, batch_size=4, rng=0).indices(3)
    assert batches.shape == (3, 4) and batches.min() >= 0 and batches.max() < 10


def test_without_replacement_cycles_through_shuffled_epochs():
    """Eq. (16): every epoch visits each point exactly once, in a fresh order."""
    sampler = optim.WithoutReplacement(10, rng=0)
    # drawn in uneven chunks, the stream still splits into whole permutations
    stream = np.concatenate([sampler.indices(n) for n in (3, 14, 1, 22)]).ravel()
    epochs = stream.reshape(4, 10)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(10))
    assert len({tuple(e) for e in epochs}) == 4


def test_mini_batches_without_replacement_partition_each_epoch():
    sampler = optim.WithoutReplacement(12, batch_size=4, rng=0)
    assert sampler.steps_per_epoch == 3
    batches = sampler.indices(6)
    for epoch in (batches[:3], batches[3:]):
        np.testing.assert_array_equal(np.sort(epoch.ravel()), np.arange(12))
    uneven = optim.WithoutReplacement(10, batch_size=4, rng=0).indices(2)
    assert len(set(uneven.ravel())) == 8  # two distinct batches; two points sit out


def test_samplers_reject_bad_sizes():
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        optim.WithReplacement(10, batch_size=0)
    with pytest.raises(ValueError, match="batch_size: expected at most n=10"):
        optim.WithoutReplacement(10, batch_size=11)


# --- schedules ----------------------------------------------------------------------------------


def test_cifar_recipe_schedule():
    schedule = optim.cifar_recipe()
    assert schedule.epochs == 45
    rates = [schedule(e) for e in range(46)]
    assert rates[:30] == [0.05] * 30
    assert rates[30:40] == [0.005] * 10
    assert rates[40:] == [0.0005] * 6  # the last rate continues past the end
    assert optim.Constant(0.1)(1000) == 0.1
    with pytest.raises(ValueError, match=r"phases\[1\]: expected a positive integer epoch"):
        optim.PiecewiseConstant([(0.1, 2), (0.01, 0)])


# --- the training loop --------------------------------------------------------------------------


def regression_problem(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    y = (x @ np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 1.0]])).astype(np.float32)
    return x, y


def test_train_records_cost_and_learns():
    x, y = regression_problem()
    net = linear_net()
    history = optim.train(net, nn.QuadraticCost(), x[:30], y[:30], optim.SGD(net, lr=0.1),
                          optim.WithoutReplacement(30, batch_size=5, rng=0), epochs=20,
                          record_every=12, validation=(x[30:], y[30:]), progress=False)
    assert history.steps_done == 120 and not history.interrupted
    assert history.steps == list(range(0, 121, 12))
    assert len(history.validation_cost) == len(history.train_cost) == 11
    assert history.train_cost[-1] < 1e-3 * history.train_cost[0]
    assert history.validation_cost[-1] < 1e-3 * history.validation_cost[0]


def test_train_follows_the_schedule_by_epoch():
    x, y = regression_problem()
    net = linear_net()
    history = optim.train(net, nn.QuadraticCost(), x, y, optim.SGD(net, lr=1.0),
                          optim.WithReplacement(40, batch_size=10, rng=0), epochs=3,
                          schedule=optim.PiecewiseConstant([(0.1, 2), (0.01, 1)]),
                          record_every=1, progress=False)
    assert history.learning_rate == [0.1] * 9 + [0.01] * 4


def test_divergence_names_step_and_learning_rate():
    x, y = regression_problem()
    net = linear_net()
    with pytest.raises(optim.TrainingDiverged, match=r"step \d+ with learning rate 1e\+06"):
        optim.train(net, nn.QuadraticCost(), x, y, optim.SGD(net, lr=1e6),
                    optim.WithReplacement(40, rng=0), steps=1000, progress=False)


def test_ctrl_c_stops_cleanly_and_keeps_what_was_learned():
    x, y = regression_problem()
    net = linear_net()
    start = net["fc"].weight.copy()
    calls = 0

    def cost(output, target):
        nonlocal calls
        calls += 1
        if calls == 60:  # recording at step 0 uses call 1; steps use calls 2, 3, ...
            raise KeyboardInterrupt
        return nn.QuadraticCost()(output, target)

    history = optim.train(net, cost, x, y, optim.SGD(net, lr=0.05),
                          optim.WithReplacement(40, rng=0), steps=1000, record_every=500,
                          progress=False)
    assert history.interrupted and history.steps_done == 58
    assert history.steps == [0, 58]
    assert not np.array_equal(net["fc"].weight, start)
    assert history.train_cost[-1] < history.train_cost[0]


def test_train_argument_errors():
    x, y = regression_problem()
    net = linear_net()
    sgd, sampler = optim.SGD(net, lr=0.1), optim.WithReplacement(40)
    with pytest.raises(ValueError, match="steps, epochs: expected exactly one"):
        optim.train(net, nn.QuadraticCost(), x, y, sgd, sampler, steps=5, epochs=1)
    with pytest.raises(ValueError, match="steps: expected a non-negative integer"):
        optim.train(net, nn.QuadraticCost(), x, y, sgd, sampler, steps=-1)


def test_progress_bar_writes_to_its_stream():
    stream = io.StringIO()
    bar = optim.Progress(100, stream=stream)
    for done in range(0, 101, 5):
        bar.update(done, cost=0.5)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11  # not a terminal: one line per tenth
    assert lines[-1].startswith("[" + "#" * 30 + "] 100/100 steps")
    assert "cost 0.5" in lines[-1]


# --- the fused single-point trainer -------------------------------------------------------------


def listing_6_1(W, b, x, y, indices, eta):
    """The MATLAB loop of Listing 6.1, in float64 NumPy, one step per index."""
    W, b = [w.copy() for w in W], [v.copy() for v in b]
    for k in indices:
        a = [x[k]]
        for Wl, bl in zip(W, b):
            a.append(1 / (1 + np.exp(-(Wl @ a[-1] + bl))))
        delta = [None] * 3
        delta[2] = a[3] * (1 - a[3]) * (a[3] - y[k])
        delta[1] = a[2] * (1 - a[2]) * (W[2].T @ delta[2])
        delta[0] = a[1] * (1 - a[1]) * (W[1].T @ delta[1])
        for l in range(3):
            W[l] -= eta * np.outer(delta[l], a[l])
            b[l] -= eta * delta[l]
    return W, b


def test_fused_trainer_is_listing_6_1():
    net = netbp.paper_network(np.random.default_rng(0))
    x, y = netbp.paper_points()
    W0 = [net[i].weight.astype(float) for i in (0, 2, 4)]
    b0 = [net[i].bias.astype(float) for i in (0, 2, 4)]
    indices = np.random.default_rng(1).integers(0, 10, 2000)
    trainer = optim.SigmoidNetSGD(net, lr=0.05)
    trainer.run(x, y, indices[:700])
    trainer.run(x, y, indices[700:], first_step=700)  # continues from the float64 state
    assert trainer.position == 2000
    W, b = listing_6_1(W0, b0, x, y, indices, 0.05)
    for l, i in enumerate((0, 2, 4)):
        np.testing.assert_allclose(trainer._weights[l], W[l], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(trainer._biases[l], b[l], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(net[i].weight, W[l], rtol=1e-6)  # written back


def test_fused_trainer_matches_the_generic_layer_stack():
    x, y = netbp.paper_points()
    fused_net = netbp.paper_network(np.random.default_rng(5))
    stack_net = netbp.paper_network(np.random.default_rng(5))
    cost = nn.QuadraticCost()
    fused = optim.train(fused_net, cost, x, y, optim.SigmoidNetSGD(fused_net, 0.5),
                        optim.WithReplacement(10, rng=0), steps=300, progress=False)
    stack = optim.train(stack_net, cost, x.astype(np.float32), y.astype(np.float32),
                        optim.SGD(stack_net, 0.5), optim.WithReplacement(10, rng=0), steps=300,
                        progress=False)
    np.testing.assert_allclose(fused.train_cost, stack.train_cost, rtol=1e-4)
    for (_, a, _), (_, b, _) in zip(fused_net.parameters(), stack_net.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_trainer_checks_its_network_and_data():
    with pytest.raises(TypeError, match="net: expected a Sequential of"):
        optim.SigmoidNetSGD(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), 0.1)
    with pytest.raises(ValueError, match="feeds one with 3 inputs"):
        optim.SigmoidNetSGD(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(3, 1),
                                          nn.Sigmoid()), 0.1)
    trainer = optim.SigmoidNetSGD(netbp.paper_network(np.random.default_rng(0)), 0.1)
    with pytest.raises(ValueError, match=r"inputs: expected shape \(N, 2\), got \(10, 3\)"):
        trainer.run(np.zeros((10, 3)), np.zeros((10, 2)), [0])
    with pytest.raises(ValueError, match=r"indices: expected row numbers in \[0, 9\]"):
        trainer.run(np.zeros((10, 2)), np.zeros((10, 2)), [3, -1])


def test_fused_trainer_reports_divergence():
    x, y = netbp.paper_points()
    net = netbp.paper_network(np.random.default_rng(0))
    with pytest.raises(optim.TrainingDiverged, match="learning rate 1e\\+06"):
        optim.train(net, nn.QuadraticCost(), x, y, optim.SigmoidNetSGD(net, 1e6),
                    optim.WithReplacement(10, rng=0), steps=10_000, progress=False)


def test_fused_trainer_only_minimises_the_quadratic_cost():
    x, y = netbp.paper_points()
    net = netbp.paper_network(np.random.default_rng(0))
    with pytest.raises(ValueError, match="cost: the fused trainer minimises QuadraticCost"):
        optim.train(net, nn.SoftmaxCrossEntropy(), x, y, optim.SigmoidNetSGD(net, 0.1),
                    optim.WithReplacement(10), steps=10, progress=False)

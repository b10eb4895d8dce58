"""L-BFGS and Adam on problems with known minima."""

from __future__ import annotations

import numpy as np
import pytest

from deepstyle.style import LBFGS, Adam


def rosenbrock(x):
    a, b = x[:-1], x[1:]
    f = np.sum(100.0 * (b - a**2) ** 2 + (1.0 - a) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * a * (b - a**2) - 2.0 * (1.0 - a)
    g[1:] += 200.0 * (b - a**2)
    return f, g


def quadratic(n=50, condition=1e3, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = q @ np.diag(np.geomspace(1.0, condition, n)) @ q.T
    b = rng.standard_normal(n)
    return (lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)), np.linalg.solve(a, b)


def minimise(optimizer, iterations):
    for _ in range(iterations):
        optimizer.step()
    return optimizer


def test_lbfgs_solves_rosenbrock():
    opt = minimise(LBFGS(rosenbrock, np.array([-1.2, 1.0, -0.5, 0.8]), history_size=10), 200)
    np.testing.assert_allclose(opt.x, np.ones(4), atol=1e-6)
    assert opt.evaluations < 400


def test_lbfgs_solves_an_ill_conditioned_quadratic_fast():
    n, condition = 50, 1e3
    fun, solution = quadratic(n, condition)
    opt = LBFGS(fun, np.zeros(n), history_size=20)
    b_norm = np.linalg.norm(fun(np.zeros(n))[1])
    # gradient descent would need about 10^4 iterations at condition 1e3
    steps = 0
    while np.linalg.norm(opt.grad) > 1e-4 * b_norm and steps < 250:
        opt.step()
        steps += 1
    assert steps < 250
    assert opt.evaluations < 1.5 * steps, "most steps should be accepted at t = 1"
    minimise(opt, 250 - steps)
    # The line search compares loss values. float64 resolves them to about n * eps times the size
    # of the loss's terms (x'Ax/2 and b'x, each up to ~2|f*|), and f - f* >= lambda_min/2 |x - x*|^2
    # (lambda_min = 1 here): no method pins x down closer than this, whatever BLAS kernel runs.
    f_star = fun(solution)[0]
    reachable = np.sqrt(2.0 * n * np.finfo(float).eps * 4.0 * abs(f_star))
    error = np.linalg.norm(opt.x - solution)
    assert error <= reachable, (error, reachable)
    assert reachable < 1e-5 * np.linalg.norm(solution), "the bound itself must be a demanding one"
    values = []
    opt = LBFGS(fun, np.zeros(50), history_size=20)
    for _ in range(10):
        values.append(opt.step())
    assert all(b <= a for a, b in zip(values, values[1:])), "accepted steps never increase the loss"


def test_lbfgs_steps_meet_the_strong_wolfe_conditions():
    fun, _ = quadratic(seed=1)
    opt = LBFGS(fun, np.ones(50), history_size=5)
    for _ in range(15):
        x, f, g = opt.x, opt.f, opt.grad
        d = opt.direction()
        opt.step()
        step = opt.x - x
        t = np.dot(step, d) / np.dot(d, d)
        assert opt.f <= f + 1e-4 * t * np.dot(g, d) + 1e-12
        assert abs(np.dot(opt.grad, d)) <= 0.9 * abs(np.dot(g, d)) + 1e-12


def test_lbfgs_float32_and_history_bounded():
    fun, solution = quadratic(n=30, condition=50)
    f32 = lambda x: tuple(np.asarray(v, np.float32) for v in fun(x.astype(np.float64)))  # noqa: E731
    opt = minimise(LBFGS(f32, np.zeros(30, np.float32), history_size=3), 10)
    assert len(opt.history) == 3
    minimise(opt, 50)  # to float32's resolution, where the line search stalls and says so
    assert opt.x.dtype == np.float32
    np.testing.assert_allclose(opt.x, solution, atol=1e-3)


def test_lbfgs_stops_at_a_zero_gradient_and_with_tol_only_when_asked():
    opt = LBFGS(lambda x: (float(np.sum(x**2)), 2 * x), np.zeros(3))
    opt.step()
    assert opt.done and "zero" in opt.message
    fun, _ = quadratic(seed=2)
    without = minimise(LBFGS(fun, np.zeros(50)), 40)
    assert not without.done
    with_tol = minimise(LBFGS(fun, np.zeros(50), tol=1e-3), 40)
    assert with_tol.done and "tol" in with_tol.message


def test_lbfgs_rejects_bad_options():
    with pytest.raises(ValueError, match="history_size"):
        LBFGS(rosenbrock, np.zeros(2), history_size=0)
    with pytest.raises(ValueError, match="tol"):
        LBFGS(rosenbrock, np.zeros(2), tol=-1.0)


def test_adam_minimises_a_quadratic():
    fun, solution = quadratic(n=10, condition=10)
    opt = minimise(Adam(fun, np.zeros(10), learning_rate=0.05), 3000)
    np.testing.assert_allclose(opt.x, solution, atol=1e-3)
    with pytest.raises(ValueError, match="learning_rate"):
        Adam(fun, np.zeros(10), learning_rate=0)


@pytest.mark.parametrize("make", [lambda x0: LBFGS(rosenbrock, x0, history_size=4),
                                  lambda x0: Adam(rosenbrock, x0, learning_rate=0.01)])
def test_state_round_trip_continues_exactly(make):
    """Saved after 7 steps and loaded into a fresh optimiser, the run goes on as if never
    stopped (a checkpoint of a painting keeps L-BFGS's curvature pairs, not only x)."""
    x0 = np.array([-1.2, 1.0, -0.5, 0.8])
    straight = minimise(make(x0), 15)
    first = minimise(make(x0), 7)
    state = {k: (v.copy() if isinstance(v, np.ndarray) else v)
             for k, v in first.state_dict().items()}
    second = make(np.zeros(4))
    second.load_state_dict(state)
    minimise(second, 8)
    np.testing.assert_array_equal(second.x, straight.x)
    assert second.f == straight.f and second.evaluations == straight.evaluations

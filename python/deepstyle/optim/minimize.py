"""Optimisers of one array ``x`` for ``fun(x) -> (f, grad)`` (style transfer's pixels): L-BFGS with
a strong-Wolfe line search, and Adam. (Network parameters have their own optimisers, SGD and Adam
in ``sgd.py``, which step from the gradients a backward pass stored.)

Both are written against the array module of ``x`` (NumPy or CuPy, found without importing
CuPy when it is absent), so the same code runs on the GPU. Scalars (losses, dot products) are
Python floats. Each ``step()`` is one iteration; the caller decides when to stop. Neither stops
on its own because the loss changes little, unless given ``tol``: style transfer keeps
improving visibly long after the relative change per iteration is tiny.

``state_dict()`` gives the optimiser's whole state as arrays and numbers (what a checkpoint
stores); ``load_state_dict`` on an optimiser made with the same ``fun`` continues exactly where
the saved one stood.
"""

from __future__ import annotations

import math

from ..backend import array_module

__all__ = ["LBFGS", "Adam"]


def _dot(a, b):
    # in the arrays' own precision (BLAS): float32 dot products of image-sized vectors are
    # accurate to ~1e-5 relative, plenty for L-BFGS's scalars, and 100x cheaper than upcasting
    return float(array_module(a).vdot(a.ravel(), b.ravel()))


class LBFGS:
    """Limited-memory BFGS (Nocedal & Wright, Algorithm 7.4 and 7.5).

    The search direction comes from the two-loop recursion over the last ``history_size``
    pairs (s, y), scaled by gamma = s.y / y.y; the step length from a line search satisfying
    the strong Wolfe conditions (Algorithm 3.5 and 3.6, cubic interpolation), so every
    accepted pair has positive curvature. The first step is 1 / |g|_1 long (the gradient's
    scale says nothing about the step's). After ``step()``: ``x``, ``f``, ``grad``,
    ``evaluations``; ``done`` is set when no further progress is possible (a zero gradient,
    no decrease found along a steepest-descent direction, or a change below ``tol``).
    """

    def __init__(self, fun, x0, history_size=100, max_evals_per_step=20, tol=None,
                 c1=1e-4, c2=0.9):
        if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"history_size: expected a positive integer, got {history_size!r}")
        if not isinstance(max_evals_per_step, int) or max_evals_per_step < 2:
            raise ValueError(f"max_evals_per_step: expected an integer >= 2, got {max_evals_per_step!r}")
        if tol is not None and not tol >= 0:
            raise ValueError(f"tol: expected a non-negative number or None, got {tol!r}")
        self.fun = fun
        self.history_size = history_size
        self.max_evals_per_step = max_evals_per_step
        self.tol = tol
        self.c1, self.c2 = c1, c2
        self.x = x0.copy()
        self.f, self.grad = self._evaluate(self.x)
        self.evaluations = 1
        self.history = []  # (s, y, 1 / y.s), oldest first
        self.done = not math.isfinite(self.f)
        self.message = "the loss is not finite" if self.done else ""

    def _evaluate(self, x):
        f, g = self.fun(x)
        return float(f), g

    def state_dict(self):
        state = {"x": self.x, "grad": self.grad, "f": self.f, "evaluations": self.evaluations,
                 "pairs": len(self.history)}
        for i, (s, y, _) in enumerate(self.history):
            state[f"s{i}"], state[f"y{i}"] = s, y
        return state

    def load_state_dict(self, state):
        xp = array_module(self.x)
        self.x, self.grad = xp.asarray(state["x"]).copy(), xp.asarray(state["grad"]).copy()
        self.f, self.evaluations = float(state["f"]), int(state["evaluations"])
        self.history = []
        for i in range(int(state["pairs"])):
            s, y = xp.asarray(state[f"s{i}"]).copy(), xp.asarray(state[f"y{i}"]).copy()
            self.history.append((s, y, 1.0 / _dot(y, s)))
        self.done, self.message = not math.isfinite(self.f), ""

    def direction(self):
        """-H g by the two-loop recursion."""
        q = self.grad.copy()
        alphas = []
        for s, y, rho in reversed(self.history):
            alpha = rho * _dot(s, q)
            q -= alpha * y
            alphas.append(alpha)
        if self.history:
            s, y, _ = self.history[-1]
            q *= _dot(s, y) / _dot(y, y)
        for (s, y, rho), alpha in zip(self.history, reversed(alphas)):
            beta = rho * _dot(y, q)
            q += (alpha - beta) * s
        return -q

    def step(self):
        """One iteration; returns the new loss."""
        if self.done:
            return self.f
        if not math.isfinite(_dot(self.grad, self.grad)) or _dot(self.grad, self.grad) == 0.0:
            self.done, self.message = True, "the gradient is zero"
            return self.f
        d = self.direction()
        slope = _dot(self.grad, d)
        if not slope < 0:  # not a descent direction: the history misleads, start afresh
            self.history.clear()
            d = -self.grad
            slope = _dot(self.grad, d)
        first = 1.0 if self.history else min(1.0, 1.0 / float(array_module(d).abs(d).sum()))
        result = self._line_search(d, slope, first)
        if result is None and self.history:
            self.history.clear()
            d = -self.grad
            slope = _dot(self.grad, d)
            result = self._line_search(d, slope, min(1.0, 1.0 / float(array_module(d).abs(d).sum())))
        if result is None:
            self.done, self.message = True, "the line search found no decrease"
            return self.f
        t, x_new, f_new, g_new = result
        s = x_new - self.x
        y = g_new - self.grad
        ys = _dot(y, s)
        if ys > 1e-10 * math.sqrt(_dot(y, y) * _dot(s, s)):
            self.history.append((s, y, 1.0 / ys))
            if len(self.history) > self.history_size:
                self.history.pop(0)
        change = abs(self.f - f_new)
        self.x, self.f, self.grad = x_new, f_new, g_new
        if self.tol is not None and change <= self.tol * max(abs(f_new), 1e-30):
            self.done, self.message = True, f"the relative change fell below tol={self.tol:g}"
        return self.f

    def _line_search(self, d, slope0, t):
        """Strong-Wolfe step along d from self.x: (t, x, f, g), or None if no point along d
        with a lower loss was found. ``slope0`` = g.d < 0."""
        f0 = self.f
        evals = 0

        def phi(t):
            nonlocal evals
            evals += 1
            self.evaluations += 1
            x = self.x + t * d
            f, g = self._evaluate(x)
            return x, f, g, _dot(g, d)

        best = None  # lowest point seen, in case Wolfe cannot be met within the budget
        t_prev, f_prev, slope_prev = 0.0, f0, slope0
        low = high = None
        while evals < self.max_evals_per_step:
            x, f, g, slope = phi(t)
            if math.isfinite(f) and f < f0 and (best is None or f < best[2]):
                best = (t, x, f, g)
            if not math.isfinite(f) or f > f0 + self.c1 * t * slope0 or (evals > 1 and f >= f_prev):
                low, high = (t_prev, f_prev, slope_prev), (t, f, slope)
                break
            if abs(slope) <= -self.c2 * slope0:
                return t, x, f, g
            if slope >= 0:
                low, high = (t, f, slope), (t_prev, f_prev, slope_prev)
                break
            t_next = _cubic_minimum(t_prev, f_prev, slope_prev, t, f, slope, t + 0.01 * (t - t_prev), 10.0 * t)
            t_prev, f_prev, slope_prev, t = t, f, slope, t_next
        # zoom: low satisfies sufficient decrease, the minimiser lies between low and high
        while low is not None and evals < self.max_evals_per_step:
            (t_lo, f_lo, s_lo), (t_hi, f_hi, s_hi) = low, high
            if abs(t_hi - t_lo) <= 1e-12 * max(t_hi, t_lo):
                break
            left, right = min(t_lo, t_hi), max(t_lo, t_hi)
            margin = 0.1 * (right - left)
            if math.isfinite(f_hi):
                t = _cubic_minimum(t_lo, f_lo, s_lo, t_hi, f_hi, s_hi, left + margin, right - margin)
            else:
                t = 0.5 * (left + right)
            x, f, g, slope = phi(t)
            if math.isfinite(f) and f < f0 and (best is None or f < best[2]):
                best = (t, x, f, g)
            if not math.isfinite(f) or f > f0 + self.c1 * t * slope0 or f >= f_lo:
                high = (t, f, slope)
            else:
                if abs(slope) <= -self.c2 * slope0:
                    return t, x, f, g
                if slope * (t_hi - t_lo) >= 0:
                    high = low
                low = (t, f, slope)
        return best


def _cubic_minimum(t1, f1, g1, t2, f2, g2, lower, upper):
    """Minimiser of the cubic through (t1, f1, slope g1) and (t2, f2, slope g2), clamped to
    [lower, upper]; the interval's midpoint when the cubic has no minimum."""
    lower, upper = min(lower, upper), max(lower, upper)
    d1 = g1 + g2 - 3.0 * (f1 - f2) / (t1 - t2)
    radicand = d1 * d1 - g1 * g2
    if radicand >= 0 and math.isfinite(radicand):
        d2 = math.copysign(math.sqrt(radicand), t2 - t1)
        denominator = g2 - g1 + 2.0 * d2
        if denominator != 0:
            t = t2 - (t2 - t1) * (g2 + d2 - d1) / denominator
            if math.isfinite(t):
                return min(max(t, lower), upper)
    return 0.5 * (lower + upper)


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction. ``f`` after ``step()`` is the loss at
    the point the step started from (Adam evaluates once per step)."""

    def __init__(self, fun, x0, learning_rate=0.01, beta1=0.9, beta2=0.999, eps=1e-8, tol=None):
        if not learning_rate > 0:
            raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"beta1, beta2: expected values in [0, 1), got {beta1!r}, {beta2!r}")
        self.fun = fun
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self.tol = tol
        self.x = x0.copy()
        xp = array_module(x0)
        self.m = xp.zeros_like(x0)
        self.v = xp.zeros_like(x0)
        self.t = 0
        self.f = math.inf
        self.evaluations = 0
        self.done, self.message = False, ""

    def state_dict(self):
        return {"x": self.x, "m": self.m, "v": self.v, "t": self.t, "f": self.f,
                "evaluations": self.evaluations}

    def load_state_dict(self, state):
        xp = array_module(self.x)
        self.x, self.m, self.v = (xp.asarray(state[k]).copy() for k in ("x", "m", "v"))
        self.t, self.f = int(state["t"]), float(state["f"])
        self.evaluations = int(state["evaluations"])
        self.done, self.message = False, ""

    def step(self):
        if self.done:
            return self.f
        f, g = self.fun(self.x)
        f = float(f)
        self.evaluations += 1
        if not math.isfinite(f):
            self.done, self.message = True, "the loss is not finite"
            return self.f
        previous, self.f = self.f, f
        self.t += 1
        self.m *= self.beta1
        self.m += (1 - self.beta1) * g
        self.v *= self.beta2
        self.v += (1 - self.beta2) * (g * g)
        xp = array_module(self.x)
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        self.x -= self.learning_rate * m_hat / (xp.sqrt(v_hat) + self.eps)
        if self.tol is not None and abs(previous - f) <= self.tol * max(abs(f), 1e-30):
            self.done, self.message = True, f"the relative change fell below tol={self.tol:g}"
        return f

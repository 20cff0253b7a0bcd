"""The full-batch L-BFGS of sus2md/train/lbfgs.py on functions with known minima."""
import math

import pytest
import torch

from sus2md.train.lbfgs import LBFGS


def _rosenbrock(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    f = (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()
    (g,) = torch.autograd.grad(f, x)
    return float(f.detach()), g


def _bad_scaled_quadratic(x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Curvatures from 1e-4 to 1e4, minimum at x = 1."""
    h = torch.logspace(-4, 4, x.numel(), dtype=torch.float64)
    d = x - 1.0
    return float(0.5 * (h * d * d).sum()), h * d


def _run(fg, x0, steps, batch_sq=None, **kw):
    opt = LBFGS(**kw)
    f, g = fg(x0)
    opt.start(x0, f, g, batch_sq)
    evals = 0
    for _ in range(steps):
        _, n = opt.step(fg)
        evals += n
    return opt, evals


def test_rosenbrock_minimum():
    x0 = torch.tensor([-1.2, 1.0] * 5, dtype=torch.float64)
    opt, evals = _run(_rosenbrock, x0, 120, precondition=False, history_size=10, first_step=0.1)
    assert opt.f < 1e-10 and torch.allclose(opt.x, torch.ones(10, dtype=torch.float64), atol=1e-5)
    assert evals < 2 * 120  # the unit step is accepted most of the time


def test_every_step_satisfies_the_wolfe_conditions():
    opt = LBFGS(history_size=5, precondition=False)
    x0 = torch.tensor([-1.2, 1.0, 0.5], dtype=torch.float64)
    opt.start(x0, *_rosenbrock(x0), None)
    for _ in range(30):
        x, f, g = opt.x.clone(), opt.f, opt.g.clone()
        d = opt._direction()
        opt.step(_rosenbrock)
        step = opt.x - x
        if step.abs().max() == 0:
            continue
        t_d = step  # t * d
        assert opt.f <= f + opt.c1 * float(g @ t_d) + 1e-15  # sufficient decrease
        assert abs(float(opt.g @ t_d)) <= opt.c2 * abs(float(g @ t_d)) + 1e-15  # curvature (strong)
        assert float(g @ d) < 0


def test_diagonal_scaling_fixes_bad_scaling():
    """With the metric from the gradient scales the badly scaled quadratic converges in a few
    steps; from the identity it needs many more (the failure mode on per-pair parameters)."""
    x0 = torch.zeros(40, dtype=torch.float64)
    h = torch.logspace(-4, 4, 40, dtype=torch.float64)
    plain, _ = _run(_bad_scaled_quadratic, x0, 15, precondition=False, history_size=5)
    scaled, _ = _run(_bad_scaled_quadratic, x0, 15, batch_sq=h ** 2, precondition=True, history_size=5)
    assert scaled.f < 1e-9 and plain.f > 1e-3


def test_state_dict_continues_the_same_run():
    x0 = torch.tensor([-1.2, 1.0, 0.3, 0.7], dtype=torch.float64)
    full, _ = _run(_rosenbrock, x0, 20, precondition=False, history_size=4)
    half, _ = _run(_rosenbrock, x0, 8, precondition=False, history_size=4)
    again = LBFGS(history_size=4, precondition=False)
    again.load_state_dict({k: (v.clone() if isinstance(v, torch.Tensor) else
                               [t.clone() for t in v] if isinstance(v, list) else v) for k, v in half.state_dict().items()})
    for _ in range(12):
        again.step(_rosenbrock)
    assert torch.equal(again.x, full.x) and again.f == full.f


def test_non_finite_loss_shortens_the_step():
    def fg(x):
        if float(x.abs().max()) > 2.0:
            return math.nan, torch.full_like(x, math.nan)
        return float((x * x).sum()), 2 * x

    x0 = torch.full((3,), 1.5, dtype=torch.float64)
    opt = LBFGS(precondition=False, first_step=50.0)
    opt.start(x0, *fg(x0), None)
    f, _ = opt.step(fg)
    assert math.isfinite(f) and f < 3 * 1.5 ** 2


@pytest.mark.parametrize("precondition", [True, False])
def test_history_is_bounded(precondition):
    x0 = torch.tensor([-1.2, 1.0, 0.5, 0.2], dtype=torch.float64)
    opt, _ = _run(_rosenbrock, x0, 12, batch_sq=torch.ones(4, dtype=torch.float64), precondition=precondition, history_size=3)
    assert len(opt.s) == len(opt.y) <= 3


def test_flat_loss_stalls_instead_of_repeating_the_failed_search():
    """A loss flat to its round-off (here: rounded to 1e-6, like float32 sums) near the minimum:
    the search fails, the restart along the gradient fails too, and the optimiser says it stalled
    (before, every later iteration repeated the same 20 failed evaluations)."""
    def fg(x):
        return round(float((x * x).sum()) / 1e-6) * 1e-6 + 1.0, 2 * x

    far = torch.full((4,), 1.0, dtype=torch.float64)
    opt, _ = _run(fg, far, 3, precondition=False)
    assert not opt.stalled and opt.f < 1.0 + 4.0  # real progress first
    near = torch.full((4,), 1e-4, dtype=torch.float64)
    opt = LBFGS(precondition=False)
    opt.start(near, *fg(near), None)
    for _ in range(2):
        opt.step(fg)
    assert opt.stalled
    assert "stalled" in opt.state_dict()

"""``deepstyle netbp``: Listing 6.1's data and a shortened run of its experiment."""

import csv

import numpy as np
import pytest

from deepstyle import cli, netbp
from deepstyle.commands import netbp as netbp_command


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_listing_6_1_data():
    x, y = netbp.paper_points()
    np.testing.assert_array_equal(x[:, 0], [0.1, 0.3, 0.1, 0.6, 0.4, 0.6, 0.5, 0.9, 0.4, 0.7])
    np.testing.assert_array_equal(x[:, 1], [0.1, 0.4, 0.5, 0.9, 0.2, 0.3, 0.6, 0.2, 0.4, 0.6])
    np.testing.assert_array_equal(y, [[1, 0]] * 5 + [[0, 1]] * 5)  # eq. (5)
    x11, y11 = netbp.paper_points(extra_point=True)
    np.testing.assert_array_equal(x11[10], [0.3, 0.7])
    np.testing.assert_array_equal(y11[10], [0, 1])


def test_shortened_run_learns_all_ten_points(tmp_path, capsys):
    """2e5 of the paper's 1e6 steps: the cost falls from about 5 by two orders of magnitude and
    every point lands on its side of F1(x) = F2(x)."""
    assert cli.main(["netbp", "--iterations", "200000", "--out", str(tmp_path), "--quiet"]) == 0
    rows = read_csv(tmp_path / "cost.csv")
    steps = [int(r["step"]) for r in rows]
    costs = [float(r["cost"]) for r in rows]
    assert steps == list(range(0, 200_001, 10_000))
    assert 3 < costs[0] < 8
    assert costs[-1] < 0.02
    points = read_csv(tmp_path / "points.csv")
    assert len(points) == 10
    for p in points:
        f1, f2 = float(p["F1"]), float(p["F2"])
        assert (f1 > f2) == (p["category"] == "A"), p
    assert "10/10 classified correctly" in capsys.readouterr().out
    assert (tmp_path / "netbp.npz").exists()
    assert len(read_csv(tmp_path / "region.csv")) == 101 * 101
    assert (tmp_path / "cost.png").stat().st_size > 1000
    assert (tmp_path / "region.png").stat().st_size > 1000


def test_extra_point_and_least_squares(tmp_path, capsys):
    pytest.importorskip("scipy")
    args = ["netbp", "--iterations", "20000", "--out", str(tmp_path), "--quiet",
            "--extra-point", "--lsq"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "10 points: least squares cost" in out and "11 points: least squares cost" in out
    assert "11/11 classified correctly" in out.split("11 points: least squares")[1]
    assert len(read_csv(tmp_path / "points-extra.csv")) == 11
    for name in ["cost-extra.csv", "region-extra.png", "netbp-extra.npz"]:
        assert (tmp_path / name).exists()


def test_without_matplotlib_it_writes_csvs_and_says_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(netbp_command, "_pyplot", lambda: None)
    assert cli.main(["netbp", "--iterations", "100", "--out", str(tmp_path), "--quiet"]) == 0
    assert "pip install 'deepstyle[plot]'" in capsys.readouterr().err
    assert (tmp_path / "cost.csv").exists() and not (tmp_path / "cost.png").exists()


def test_same_seed_same_run(tmp_path):
    for name in ("a", "b"):
        cli.main(["netbp", "--iterations", "3000", "--record-every", "1000", "--seed", "7",
                  "--out", str(tmp_path / name), "--quiet"])
    assert read_csv(tmp_path / "a" / "cost.csv") == read_csv(tmp_path / "b" / "cost.csv")


@pytest.mark.parametrize("option, value, message", [
    ("--iterations", "-5", "--iterations: expected a non-negative integer"),
    ("--eta", "0", "--eta: expected a positive learning rate"),
    ("--record-every", "0", "--record-every: expected a positive integer"),
])
def test_bad_options_are_clear_errors(tmp_path, capsys, option, value, message):
    assert cli.main(["netbp", option, value, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err

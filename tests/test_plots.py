import numpy as np
import pandas as pd
import pytest

from nas_tune.errors import UserError
from nas_tune.report.plots import plot_hypervolume, plot_pareto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, folder):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp files left behind


@pytest.fixture
def trials():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"trial_id": range(40), "params": rng.uniform(0.1, 1, 40), "error": rng.uniform(0.05, 0.5, 40)}
    )
    frame.loc[3, "error"] = np.nan  # a failed trial
    return frame


def test_plot_pareto_with_highlight(tmp_path, trials):
    path = plot_pareto(
        trials, "params", "error", tmp_path / "pareto.png",
        label_column="trial_id", title="error vs params", highlight=trials.iloc[[0, 5]],
    )
    _assert_png(path, tmp_path)


def test_plot_pareto_labels_front_and_handles_empty(tmp_path, trials):
    _assert_png(plot_pareto(trials, "params", "error", tmp_path / "a.png", label_column="trial_id"), tmp_path)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    _assert_png(plot_pareto(trials.iloc[:0], "params", "error", empty_dir / "b.png"), empty_dir)


def test_plot_pareto_missing_column_is_user_error(tmp_path, trials):
    with pytest.raises(UserError, match="latency"):
        plot_pareto(trials, "latency", "error", tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_hypervolume(tmp_path):
    traces = {"random": np.array([0.1, 0.3, 0.3, 0.5]), "ehvi": np.array([0.2, 0.4, 0.6])}
    _assert_png(plot_hypervolume(traces, tmp_path / "hv.png", title="HV"), tmp_path)
    timed = tmp_path / "timed"
    timed.mkdir()
    x_values = {"random": np.array([1.0, 2.0, 4.0, 8.0]), "ehvi": np.array([3.0, 5.0, 9.0])}
    path = plot_hypervolume(traces, timed / "hv_time.png", xlabel="seconds", x_values=x_values)
    _assert_png(path, timed)


def test_plot_hypervolume_rejects_mismatched_x_values(tmp_path):
    with pytest.raises(ValueError, match="random"):
        plot_hypervolume({"random": np.ones(3)}, tmp_path / "hv.png", x_values={"random": np.ones(2)})
    with pytest.raises(ValueError, match="ehvi"):
        plot_hypervolume({"ehvi": np.ones(3)}, tmp_path / "hv.png", x_values={})

import numpy as np
import pandas as pd
import pytest

from nas_tune.errors import UserError
from nas_tune.report.plots import hypervolume_figure, pareto_figure, plot_hypervolume, plot_pareto

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, folder):
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in folder.iterdir()] == [path.name]  # no temp files left behind


def _points(collection):
    return {tuple(point) for point in np.asarray(collection.get_offsets()).round(9)}


def _rows(frame, x, y):
    return {(round(a, 9), round(b, 9)) for a, b in zip(frame[x], frame[y])}


@pytest.fixture
def trials():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"trial_id": range(40), "params": rng.uniform(0.1, 1, 40), "error": rng.uniform(0.05, 0.5, 40)}
    )
    frame.loc[3, "error"] = np.nan  # a failed trial
    return frame


def _front(trials):
    """Trials no other trial beats on both params and error (both minimised), found the slow way."""
    done = trials.dropna()
    beaten = [
        (
            (done["params"] <= row.params)
            & (done["error"] <= row.error)
            & ((done["params"] < row.params) | (done["error"] < row.error))
        ).any()
        for row in done.itertuples()
    ]
    return done[~np.array(beaten)].sort_values("params")


def test_pareto_figure_plots_every_trial_the_front_and_the_highlight(trials):
    figure = pareto_figure(
        trials,
        "params",
        "error",
        label_column="trial_id",
        title="error vs params",
        highlight=trials.iloc[[0, 5]],
        xlabel="fraction kept",
    )
    axes = figure.axes[0]
    everything, selected = axes.collections
    assert _points(everything) == _rows(trials.dropna(), "params", "error")  # the failed trial is left out
    assert _points(selected) == _rows(trials.iloc[[0, 5]], "params", "error")
    (front_line,) = axes.lines
    front = _front(trials)
    np.testing.assert_allclose(front_line.get_xdata(), front["params"])
    np.testing.assert_allclose(front_line.get_ydata(), front["error"])
    assert [text.get_text() for text in axes.texts] == ["0", "5"]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("fraction kept", "error", "error vs params")
    assert [t.get_text() for t in axes.get_legend().get_texts()] == [
        "trials (39)",
        f"Pareto front ({len(front)})",
        "selected",
    ]


def test_pareto_figure_labels_the_front_without_highlight_and_handles_empty(tmp_path, trials):
    axes = pareto_figure(trials, "params", "error", label_column="trial_id").axes[0]
    assert [text.get_text() for text in axes.texts] == [str(i) for i in _front(trials)["trial_id"]]
    _assert_png(plot_pareto(trials, "params", "error", tmp_path / "a.png", label_column="trial_id"), tmp_path)
    empty = pareto_figure(trials.iloc[:0], "params", "error").axes[0]
    assert len(empty.collections[0].get_offsets()) == 0 and len(empty.lines[0].get_xdata()) == 0


def test_plot_pareto_missing_column_is_user_error(tmp_path, trials):
    with pytest.raises(UserError, match="latency"):
        plot_pareto(trials, "latency", "error", tmp_path / "p.png")
    assert list(tmp_path.iterdir()) == []


def test_hypervolume_figure_draws_each_trace_against_its_x_values(tmp_path):
    traces = {"random": np.array([0.1, 0.3, 0.3, 0.5]), "ehvi": np.array([0.2, 0.4, 0.6])}
    axes = hypervolume_figure(traces, title="HV").axes[0]
    assert [line.get_label() for line in axes.lines] == ["random", "ehvi"]
    for line, trace in zip(axes.lines, traces.values()):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(1, len(trace) + 1))
        np.testing.assert_array_equal(line.get_ydata(), trace)
    x_values = {"random": np.array([1.0, 2.0, 4.0, 8.0]), "ehvi": np.array([3.0, 5.0, 9.0])}
    axes = hypervolume_figure(traces, xlabel="seconds", x_values=x_values).axes[0]
    for line, name in zip(axes.lines, traces):
        np.testing.assert_array_equal(line.get_xdata(), x_values[name])
        np.testing.assert_array_equal(line.get_ydata(), traces[name])
    assert axes.get_xlabel() == "seconds"
    _assert_png(plot_hypervolume(traces, tmp_path / "hv.png", x_values=x_values), tmp_path)


def test_plot_hypervolume_rejects_mismatched_x_values(tmp_path):
    with pytest.raises(ValueError, match="random"):
        plot_hypervolume({"random": np.ones(3)}, tmp_path / "hv.png", x_values={"random": np.ones(2)})
    with pytest.raises(ValueError, match="ehvi"):
        plot_hypervolume({"ehvi": np.ones(3)}, tmp_path / "hv.png", x_values={})

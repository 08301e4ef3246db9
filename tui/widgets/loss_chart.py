"""Training and validation loss plotted in the terminal (plotext)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..metrics import RunProgress


class LossChart(PlotextPlot):
    """Loss against step: the training loss as a line, validation loss as points.

    The key is written under the axis, not as plotext's legend: the legend sits in the top
    left corner of the plot, right over the first (highest) losses.
    """

    def show(self, progress: RunProgress) -> None:
        """Plot the run's loss history (an empty plot while there is none)."""
        plt = self.plt
        plt.clear_data()
        key = ["step"]
        if progress.steps:
            plt.plot(progress.steps, progress.losses, marker="braille")
            key.append("── train")
        if progress.eval_steps:
            plt.scatter(progress.eval_steps, progress.val_losses, marker="●")
            key.append("● valid")
        plt.xlabel("   ".join(key))
        self.refresh()
